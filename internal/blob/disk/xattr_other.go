//go:build !linux

package disk

import (
	"errors"
	"os"
)

func setMetaAttr(*os.File, string) error { return errors.ErrUnsupported }

func metaAttrOf(*os.File) (string, bool) { return "", false }
