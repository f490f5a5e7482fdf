package api

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/audio"
	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

const (
	// chunkURLLifetime is how long a chunk URL template is valid.
	chunkURLLifetime = 24 * time.Hour
	// maxChunkBytes bounds one streamed chunk.
	maxChunkBytes = 64 << 20
	// maxChunks bounds the chunks of one recording.
	maxChunks        = 100000
	chunkPlaceholder = "{chunk_number}"
)

var md5Pattern = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

func streamContentType(ct *string) string {
	if ct == nil {
		return "audio/opus"
	}
	return *ct
}

// chunkPrefix is where a streamed recording's chunks are stored; chunk n
// is chunkPrefix + n + "." + extension.
func chunkPrefix(rec *model.Recording) string {
	return rec.ProjectID + "/" + rec.ID + "/chunks/chunk_"
}

// streamState is what a streamed recording keeps about its finalize.
type streamState struct {
	ContentType string         `json:"content_type"`
	Request     string         `json:"request,omitempty"`
	Response    map[string]any `json:"response,omitempty"`
}

func loadStreamState(rec *model.Recording) streamState {
	st := streamState{ContentType: "audio/opus"}
	if rec.StreamState != nil {
		_ = json.Unmarshal([]byte(*rec.StreamState), &st)
	}
	return st
}

// chunkTemplate returns the URL template devices PUT chunks to. The local
// store signs one template for every chunk; other stores need a presigned
// URL per chunk, so the template points at the chunk-url endpoint.
func (s *Server) chunkTemplate(r *http.Request, rec *model.Recording, ct string) (blob.SignedURL, error) {
	expires := s.store.Now().Add(chunkURLLifetime)
	if ps, ok := s.blob.(blob.PrefixSigner); ok {
		signed, err := ps.PresignPutPrefix(r.Context(), chunkPrefix(rec), chunkPlaceholder, "."+extensions[ct], ct,
			min(maxChunkBytes, s.cfg.MaxFileSize), expires)
		if err != nil {
			return signed, errInternal(err)
		}
		return signed, nil
	}
	url := strings.TrimSuffix(s.cfg.PublicURL, "/") + "/v1/recordings/" + rec.ID + "/chunk-url?chunk_number=" + chunkPlaceholder
	return blob.SignedURL{URL: url, Expires: expires, Headers: map[string]string{"Content-Type": ct}}, nil
}

func (s *Server) chunkURL(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body struct {
		ChunkNumber optional[int] `json:"chunk_number"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	number := body.ChunkNumber.ptr()
	if number == nil && r.URL.Query().Get("chunk_number") != "" {
		n, err := strconv.Atoi(r.URL.Query().Get("chunk_number"))
		if err != nil {
			return errInvalid("chunk_number", "chunk_number must be an integer from 1 to %d.", maxChunks)
		}
		number = &n
	}
	if number != nil && (*number < 1 || *number > maxChunks) {
		return errInvalid("chunk_number", "chunk_number must be an integer from 1 to %d.", maxChunks)
	}
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}
	if rec.Status != model.RecordingStreaming {
		return errConflict("conflict", "", "Recording %s is not an open streamed recording.", rec.ID)
	}
	ct := loadStreamState(rec).ContentType

	if number == nil {
		tmpl, err := s.chunkTemplate(r, rec, ct)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"recording_id": rec.ID, "chunk_upload_url": tmpl.URL, "chunk_url_expires_at": formatTime(tmpl.Expires),
			"headers": tmpl.Headers,
		})
		return nil
	}
	key := chunkPrefix(rec) + strconv.Itoa(*number) + "." + extensions[ct]
	signed, err := s.blob.PresignPut(r.Context(), key, blob.PutOptions{ContentType: ct, Expires: s.store.Now().Add(uploadURLLifetime)})
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"recording_id": rec.ID, "chunk_number": *number, "upload_url": signed.URL, "method": http.MethodPut,
		"headers": signed.Headers, "expires_at": formatTime(signed.Expires),
	})
	return nil
}

type finalizeBody struct {
	TotalChunks     optional[int]    `json:"total_chunks"`
	FinalDurationMs optional[int64]  `json:"final_duration_ms"`
	ChecksumMD5     optional[string] `json:"checksum_md5"`
}

func (s *Server) finalize(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	var body finalizeBody
	if err := decodeBytes(raw, &body); err != nil {
		return err
	}
	total := body.TotalChunks.ptr()
	if total == nil || *total < 1 || *total > maxChunks {
		return errInvalid("total_chunks", "total_chunks must be an integer from 1 to %d.", maxChunks)
	}
	if v := body.FinalDurationMs.ptr(); v != nil && *v < 0 {
		return errInvalid("final_duration_ms", "final_duration_ms must not be negative.")
	}
	if v := body.ChecksumMD5.ptr(); v != nil && !md5Pattern.MatchString(*v) {
		return errInvalid("checksum_md5", "checksum_md5 must be 32 hexadecimal characters.")
	}
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}
	state := loadStreamState(rec)
	request := canonicalFinalize(body)
	if state.Response != nil {
		if state.Request != request {
			return errConflict("conflict", "", "Recording %s was already finalized with other values.", rec.ID)
		}
		writeJSON(w, http.StatusOK, state.Response)
		return nil
	}
	if !rec.Streaming {
		return errConflict("conflict", "", "Recording %s is not a streamed recording; use upload-complete.", rec.ID)
	}
	if rec.Status != model.RecordingStreaming {
		return errConflict("conflict", "", "Recording %s is being finalized; retry in a moment.", rec.ID)
	}

	chunks, err := s.chunkKeys(r.Context(), rec, state.ContentType)
	if err != nil {
		return err
	}
	if err := checkChunkCount(chunks, *total); err != nil {
		return err
	}
	out, err := s.stitch(r, p, rec, state, chunks, body, request)
	if err != nil {
		return err
	}
	s.sealChunks(r, rec)
	s.afterUpload(r, p, rec.ID)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func canonicalFinalize(b finalizeBody) string {
	md5sum := ""
	if v := b.ChecksumMD5.ptr(); v != nil {
		md5sum = strings.ToLower(*v)
	}
	return fmt.Sprintf("%d|%s", b.TotalChunks.Value, md5sum)
}

// chunkKeys returns the stored chunks by number.
func (s *Server) chunkKeys(ctx context.Context, rec *model.Recording, ct string) (map[int]blob.Info, error) {
	infos, err := s.blob.List(ctx, chunkPrefix(rec))
	if err != nil {
		return nil, errUnavailable("Could not list stored chunks; retry later.", err)
	}
	suffix := "." + extensions[ct]
	out := map[int]blob.Info{}
	for _, info := range infos {
		name := strings.TrimSuffix(strings.TrimPrefix(info.Key, chunkPrefix(rec)), suffix)
		// Only canonical chunk numbers count: "7" is chunk 7, "007" or
		// "abc" are stray objects, left out of the count and deleted with
		// the recording.
		n, err := strconv.Atoi(name)
		if err == nil && n >= 1 && n <= maxChunks && strconv.Itoa(n) == name {
			out[n] = info
		}
	}
	return out, nil
}

func checkChunkCount(chunks map[int]blob.Info, total int) error {
	var missing []string
	for n := 1; n <= total; n++ {
		if _, ok := chunks[n]; !ok {
			missing = append(missing, strconv.Itoa(n))
			if len(missing) == 10 {
				missing = append(missing, "...")
				break
			}
		}
	}
	if len(missing) > 0 {
		return &apiError{Status: 400, Code: "invalid_request", Param: "total_chunks",
			Details: map[string]any{"chunks_received": len(chunks)},
			Message: fmt.Sprintf("%d chunks are stored but total_chunks is %d; missing chunk numbers: %s.",
				len(chunks), total, strings.Join(missing, ", "))}
	}
	if len(chunks) > total {
		extra := make([]int, 0)
		for n := range chunks {
			if n > total {
				extra = append(extra, n)
			}
		}
		sort.Ints(extra)
		return &apiError{Status: 400, Code: "invalid_request", Param: "total_chunks",
			Details: map[string]any{"chunks_received": len(chunks)},
			Message: fmt.Sprintf("%d chunks are stored but total_chunks is %d (chunk %d exists).", len(chunks), total, extra[0])}
	}
	return nil
}

// stitch downloads the chunks in order, checks their MD5, joins them into
// one audio file, stores it as the recording's audio media and moves the
// recording to uploaded.
func (s *Server) stitch(r *http.Request, p *auth.Principal, rec *model.Recording, state streamState, chunks map[int]blob.Info, body finalizeBody, request string) (map[string]any, error) {
	ctx := r.Context()
	rec.Status = model.RecordingStitching
	if err := s.store.SaveRecordingState(ctx, rec); err != nil {
		return nil, errInternal(err)
	}
	restore := func() {
		rec.Status = model.RecordingStreaming
		if err := s.store.SaveRecordingState(context.WithoutCancel(ctx), rec); err != nil {
			loggerFrom(ctx).Error("StreamStateRestoreFailed", "recording_id", rec.ID, "err", err)
		}
	}
	dir, err := os.MkdirTemp("", "bota-stitch-*")
	if err != nil {
		restore()
		return nil, errInternal(err)
	}
	defer os.RemoveAll(dir)

	ext := extensions[state.ContentType]
	h := md5.New()
	paths := make([]string, 0, len(chunks))
	for n := 1; n <= len(chunks); n++ {
		path := filepath.Join(dir, fmt.Sprintf("chunk_%06d.%s", n, ext))
		if err := copyObject(ctx, s.blob, chunks[n].Key, path, h); err != nil {
			restore()
			return nil, errUnavailable("Could not read a chunk from storage; retry later.", err)
		}
		paths = append(paths, path)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want := body.ChecksumMD5.ptr(); want != nil && !strings.EqualFold(*want, sum) {
		restore()
		return nil, &apiError{Status: 400, Code: "checksum_mismatch", Param: "checksum_md5",
			Message: fmt.Sprintf("checksum_md5 %s does not match the stored chunks (md5 %s).", strings.ToLower(*want), sum)}
	}

	out := filepath.Join(dir, "stitched."+ext)
	if err := audio.Concat(ctx, paths, out, ""); err != nil {
		// Chunks that are byte ranges of one stream, not whole files,
		// join by plain concatenation.
		loggerFrom(ctx).Info("StitchFallbackToBytes", "recording_id", rec.ID, "err", err)
		if err := concatBytes(paths, out); err != nil {
			restore()
			return nil, errInternal(err)
		}
	}
	result, err := s.storeStitched(r, p, rec, state, out, len(chunks), request)
	if err != nil {
		restore()
		return nil, err
	}
	for _, info := range chunks {
		if err := s.blob.Delete(ctx, info.Key); err != nil {
			loggerFrom(ctx).Warn("ChunkDeleteFailed", "key", info.Key, "err", err)
		}
	}
	return result, nil
}

func (s *Server) storeStitched(r *http.Request, p *auth.Principal, rec *model.Recording, state streamState, path string, chunkCount int, request string) (map[string]any, error) {
	ctx := r.Context()
	f, err := os.Open(path)
	if err != nil {
		return nil, errInternal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, errInternal(err)
	}
	now := s.store.Now()
	m := &model.Media{
		ID: ids.New(ids.Media), RecordingID: rec.ID, Tenant: p.Tenant, Type: "audio", MimeType: state.ContentType,
		Status: model.MediaPending, URLExpiresAt: now,
	}
	m.StorageKey = fmt.Sprintf("%s/%s/%s/audio.%s", p.ProjectID, rec.ID, m.ID, extensions[state.ContentType])
	if err := s.blob.Put(ctx, m.StorageKey, f, info.Size(), state.ContentType); err != nil {
		return nil, errUnavailable("Could not store the stitched audio; retry later.", err)
	}
	checked, err := s.inspectObject(ctx, m, blob.Info{Key: m.StorageKey, Size: info.Size()})
	if err != nil {
		return nil, err
	}

	var out map[string]any
	err = s.store.InTx(ctx, func(tx *store.Store) error {
		if err := tx.CreateMedia(ctx, m); err != nil {
			return err
		}
		locked, err := tx.LockRecording(ctx, p.Tenant, rec.ID)
		if err != nil {
			return err
		}
		recJSON, work, err := s.markUploaded(ctx, tx, locked, []checkedMedia{checked}, &checked)
		if err != nil {
			return err
		}
		out = map[string]any{
			"id":                   rec.ID,
			"status":               model.RecordingUploaded,
			"chunks_received":      chunkCount,
			"stitching_job_id":     "job_" + strings.TrimPrefix(m.ID, "med_"),
			"transcription_status": transcriptionStatusAfterUpload(work),
			"duration_ms":          recJSON["duration_ms"],
			"recording":            recJSON,
		}
		st := streamState{ContentType: state.ContentType, Request: request, Response: out}
		raw, err := json.Marshal(st)
		if err != nil {
			return err
		}
		fresh, err := tx.Recording(ctx, p.Tenant, rec.ID)
		if err != nil {
			return err
		}
		text := string(raw)
		fresh.StreamState = &text
		return tx.SaveRecordingState(ctx, fresh)
	})
	if err != nil {
		return nil, errInternal(err)
	}
	return out, nil
}

func copyObject(ctx context.Context, bs blob.Store, key, path string, h io.Writer) error {
	rc, err := bs.Open(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(io.MultiWriter(f, h), rc); err != nil {
		return err
	}
	return f.Close()
}

func concatBytes(paths []string, out string) error {
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	defer dst.Close()
	for _, p := range paths {
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	return dst.Close()
}

// deleteChunks removes a deleted recording's leftover chunks.
func (s *Server) deleteChunks(r *http.Request, rec *model.Recording) {
	s.sealChunks(r, rec)
	infos, err := s.blob.List(r.Context(), chunkPrefix(rec))
	if err != nil {
		loggerFrom(r.Context()).Warn("ChunkListFailed", "recording_id", rec.ID, "err", err)
		return
	}
	keys := make([]string, 0, len(infos))
	for _, info := range infos {
		keys = append(keys, info.Key)
	}
	s.deleteBlobs(r, keys)
}

// sealChunks makes a store that signs one template for every chunk reject
// further chunk PUTs, so a finalized or deleted stream takes no more bytes.
// Stores that sign each chunk URL need none: chunk-url refuses such
// streams.
func (s *Server) sealChunks(r *http.Request, rec *model.Recording) {
	sealer, ok := s.blob.(blob.Sealer)
	if !ok {
		return
	}
	if err := sealer.Seal(r.Context(), chunkPrefix(rec)); err != nil {
		loggerFrom(r.Context()).Error("ChunkSealFailed", "recording_id", rec.ID, "err", err)
	}
}
