package main

import (
	"context"
	"errors"
	"io"
)

func simulate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return errors.New("simulate: not built yet")
}
