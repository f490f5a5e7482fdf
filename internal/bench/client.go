package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// apiClient sends JSON requests to one bota server.
type apiClient struct {
	base   string
	key    string
	client *http.Client
}

// call sends a JSON request with token (the API key when empty) and
// decodes a 2xx response into out, when out is not nil.
func (c *apiClient) call(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token == "" {
		token = c.key
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, truncate(raw, 300))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// boundDevice is a registered device bound to an end user.
type boundDevice struct {
	ID        string
	EndUserID string
	Token     string
}

// createDevices registers n devices, each bound to its own end user, with
// 8 requests in flight.
func (c *apiClient) createDevices(ctx context.Context, n int, prefix string) ([]boundDevice, error) {
	devices := make([]boundDevice, n)
	errs := make(chan error, n)
	slots := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			d, err := c.createDevice(ctx, fmt.Sprintf("%s-%d", prefix, i))
			if err != nil {
				errs <- err
				return
			}
			devices[i] = d
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("create devices: %w", err)
	}
	return devices, nil
}

func (c *apiClient) createDevice(ctx context.Context, name string) (boundDevice, error) {
	var user, dev struct {
		ID string `json:"id"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/end-users", "", map[string]any{"external_id": name}, &user); err != nil {
		return boundDevice{}, err
	}
	err := c.call(ctx, http.MethodPost, "/v1/devices", "",
		map[string]any{"serial_number": name, "model": "bota_pin"}, &dev)
	if err != nil {
		return boundDevice{}, err
	}
	var bound struct {
		DeviceToken string `json:"device_token"`
	}
	err = c.call(ctx, http.MethodPost, "/v1/devices/"+dev.ID+"/bind", "",
		map[string]any{"end_user_id": user.ID}, &bound)
	if err != nil {
		return boundDevice{}, err
	}
	return boundDevice{ID: dev.ID, EndUserID: user.ID, Token: bound.DeviceToken}, nil
}

// setAutoTranscription turns automatic transcription of uploads on or off
// for the key's project.
func (c *apiClient) setAutoTranscription(ctx context.Context, projectID string, on bool) error {
	return c.call(ctx, http.MethodPut, "/v1/projects/"+projectID+"/config/processing", "",
		map[string]any{"auto_transcription": map[string]any{"enabled": on}}, nil)
}
