// Package config reads the server's settings from one table of options.
// Each option is a command-line flag and an environment variable; a flag
// wins over the variable, and the variable over the default. Secrets can
// also be read from a file named by the variable with a _FILE suffix.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Config is every setting of the server.
type Config struct {
	Addr        string
	DataDir     string
	DatabaseURL string
	StorageURL  string
	// DiskSync fsyncs media files and their folders before an upload is
	// acknowledged (local storage only).
	DiskSync      bool
	PublicURL     string
	AdminToken    string
	SecretKey     string
	TLSCert       string
	TLSKey        string
	LogLevel      string
	LogFormat     string
	RateLimit     float64
	DeviceRate    float64
	TranscribeMin float64
	DeviceTTL     time.Duration
	MaxFileSize   int64
	MaxMedia      int

	SpeechWorkers int
	WhisperURL    string
	WhisperKey    string
	WhisperModel  string
	// WhisperMaxFileBytes is the largest file sent to WhisperURL at once.
	WhisperMaxFileBytes int
	DeepgramURL         string
	DeepgramKey         string
	AssemblyAIURL       string
	AssemblyAIKey       string
	JobWorkers          int
	JobRescueAfter      time.Duration
	// BodyIdleTimeout cuts off a request body that stalls.
	BodyIdleTimeout time.Duration

	WebhookEndpointConcurrency int
	WebhookPrivate             bool
	WebhookWorkers             int
	ShutdownTimeout            time.Duration
}

// Option is one row of the settings table.
type Option struct {
	Flag    string
	Env     string
	Default string
	Usage   string
	// Secret options also read ENV_FILE and are never printed.
	Secret bool
	// Commands lists the commands that take the option; empty means all.
	Commands []string
	set      func(c *Config, v string) error
}

func str(f func(c *Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = v; return nil }
}

func num(f func(c *Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("must be a non-negative number, got %q", v)
		}
		*f(c) = n
		return nil
	}
}

func integer(f func(c *Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("must be a non-negative integer, got %q", v)
		}
		*f(c) = n
		return nil
	}
}

func positive(f func(c *Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("must be a positive integer, got %q", v)
		}
		*f(c) = n
		return nil
	}
}

// atLeast accepts integers of least or more.
func atLeast(least int, f func(c *Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			return fmt.Errorf("must be an integer of at least %d, got %q", least, v)
		}
		*f(c) = n
		return nil
	}
}

func duration(f func(c *Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("must be a duration such as 90s or 24h, got %q", v)
		}
		*f(c) = d
		return nil
	}
}

func boolean(f func(c *Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", v)
		}
		*f(c) = b
		return nil
	}
}

func size(f func(c *Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*f(c) = n
		return nil
	}
}

var serveOnly = []string{"serve"}

// Options is the table of every setting, in the order the help and the
// README list them.
var Options = []Option{
	{Flag: "addr", Env: "BOTA_ADDR", Default: "127.0.0.1:8080", Commands: serveOnly,
		Usage: "address to listen on (host:port)", set: str(func(c *Config) *string { return &c.Addr })},
	{Flag: "data-dir", Env: "BOTA_DATA_DIR", Default: "./bota-data",
		Usage: "folder for the SQLite database and local media files", set: str(func(c *Config) *string { return &c.DataDir })},
	{Flag: "database-url", Env: "BOTA_DATABASE_URL", Default: "",
		Usage: "postgres://... to use PostgreSQL; empty means SQLite in the data dir", set: str(func(c *Config) *string { return &c.DatabaseURL })},
	{Flag: "storage-url", Env: "BOTA_STORAGE_URL", Default: "", Commands: serveOnly,
		Usage: "s3://bucket?endpoint=...&region=... for S3 storage; empty means the data dir", set: str(func(c *Config) *string { return &c.StorageURL })},
	{Flag: "disk-sync", Env: "BOTA_DISK_SYNC", Default: "true", Commands: serveOnly,
		Usage: "fsync each media file in the data dir before acknowledging it; false survives a killed process but not a power cut", set: boolean(func(c *Config) *bool { return &c.DiskSync })},
	{Flag: "public-url", Env: "BOTA_PUBLIC_URL", Default: "", Commands: serveOnly,
		Usage: "base URL clients reach the server at; default: the listen address", set: str(func(c *Config) *string { return &c.PublicURL })},
	{Flag: "admin-token", Env: "BOTA_ADMIN_TOKEN", Default: "", Secret: true, Commands: serveOnly,
		Usage: "bearer token for /admin/v1; empty disables the admin API", set: str(func(c *Config) *string { return &c.AdminToken })},
	{Flag: "secret-key", Env: "BOTA_SECRET_KEY", Default: "", Secret: true, Commands: serveOnly,
		Usage: "signs URLs and cursors; default: a random key kept in the database", set: str(func(c *Config) *string { return &c.SecretKey })},
	{Flag: "tls-cert", Env: "BOTA_TLS_CERT", Default: "", Commands: serveOnly,
		Usage: "PEM certificate file; with --tls-key the server speaks HTTPS", set: str(func(c *Config) *string { return &c.TLSCert })},
	{Flag: "tls-key", Env: "BOTA_TLS_KEY", Default: "", Commands: serveOnly,
		Usage: "PEM private key file for --tls-cert", set: str(func(c *Config) *string { return &c.TLSKey })},
	{Flag: "log-level", Env: "BOTA_LOG_LEVEL", Default: "info",
		Usage: "debug, info, warn or error", set: str(func(c *Config) *string { return &c.LogLevel })},
	{Flag: "log-format", Env: "BOTA_LOG_FORMAT", Default: "text",
		Usage: "text or json", set: str(func(c *Config) *string { return &c.LogFormat })},
	{Flag: "rate-limit", Env: "BOTA_RATE_LIMIT", Default: "100", Commands: serveOnly,
		Usage: "requests per second per project and mode; 0 turns every limit off", set: num(func(c *Config) *float64 { return &c.RateLimit })},
	{Flag: "device-rate-limit", Env: "BOTA_DEVICE_RATE_LIMIT", Default: "10", Commands: serveOnly,
		Usage: "requests per second per device token, and per recording for upload tokens", set: num(func(c *Config) *float64 { return &c.DeviceRate })},
	{Flag: "transcription-rate-limit", Env: "BOTA_TRANSCRIPTION_RATE_LIMIT", Default: "10", Commands: serveOnly,
		Usage: "transcription creates per minute per project and mode", set: num(func(c *Config) *float64 { return &c.TranscribeMin })},
	{Flag: "device-token-ttl", Env: "BOTA_DEVICE_TOKEN_TTL", Default: "0s", Commands: serveOnly,
		Usage: "lifetime of device tokens; 0s means until refreshed or unbound", set: duration(func(c *Config) *time.Duration { return &c.DeviceTTL })},
	{Flag: "max-file-size", Env: "BOTA_MAX_FILE_SIZE", Default: "2GiB", Commands: serveOnly,
		Usage: "largest media file accepted (bytes, or with KiB, MiB, GiB)", set: size(func(c *Config) *int64 { return &c.MaxFileSize })},
	{Flag: "max-media", Env: "BOTA_MAX_MEDIA", Default: "50", Commands: serveOnly,
		Usage: "maximum number of media files per recording", set: positive(func(c *Config) *int { return &c.MaxMedia })},
	{Flag: "speech-workers", Env: "BOTA_SPEECH_WORKERS", Default: "2", Commands: serveOnly,
		Usage: "maximum number of recogniser processes the local engine runs at once", set: positive(func(c *Config) *int { return &c.SpeechWorkers })},
	{Flag: "whisper-url", Env: "BOTA_WHISPER_URL", Default: "", Commands: serveOnly,
		Usage: "base URL of an OpenAI-compatible transcription API; empty disables whisper", set: str(func(c *Config) *string { return &c.WhisperURL })},
	{Flag: "whisper-api-key", Env: "BOTA_WHISPER_API_KEY", Default: "", Secret: true, Commands: serveOnly,
		Usage: "API key for --whisper-url", set: str(func(c *Config) *string { return &c.WhisperKey })},
	{Flag: "whisper-model", Env: "BOTA_WHISPER_MODEL", Default: "whisper-1", Commands: serveOnly,
		Usage: "model name sent to --whisper-url", set: str(func(c *Config) *string { return &c.WhisperModel })},
	{Flag: "whisper-max-file-bytes", Env: "BOTA_WHISPER_MAX_FILE_BYTES", Default: "25000000", Commands: serveOnly,
		Usage: "largest file sent to --whisper-url in one request; larger recordings go as WAV pieces of at most 10 minutes",
		// The whisper engine's MinFileBytes: about three seconds of WAV.
		set: atLeast(100_000, func(c *Config) *int { return &c.WhisperMaxFileBytes })},
	{Flag: "deepgram-url", Env: "BOTA_DEEPGRAM_URL", Default: "https://api.deepgram.com", Commands: serveOnly,
		Usage: "Deepgram API base URL", set: str(func(c *Config) *string { return &c.DeepgramURL })},
	{Flag: "deepgram-api-key", Env: "BOTA_DEEPGRAM_API_KEY", Default: "", Secret: true, Commands: serveOnly,
		Usage: "Deepgram API key; empty disables deepgram", set: str(func(c *Config) *string { return &c.DeepgramKey })},
	{Flag: "assemblyai-url", Env: "BOTA_ASSEMBLYAI_URL", Default: "https://api.assemblyai.com", Commands: serveOnly,
		Usage: "AssemblyAI API base URL", set: str(func(c *Config) *string { return &c.AssemblyAIURL })},
	{Flag: "assemblyai-api-key", Env: "BOTA_ASSEMBLYAI_API_KEY", Default: "", Secret: true, Commands: serveOnly,
		Usage: "AssemblyAI API key; empty disables assemblyai", set: str(func(c *Config) *string { return &c.AssemblyAIKey })},
	{Flag: "job-workers", Env: "BOTA_JOB_WORKERS", Default: "4", Commands: serveOnly,
		Usage: "transcription jobs run at once by this node", set: positive(func(c *Config) *int { return &c.JobWorkers })},
	{Flag: "body-idle-timeout", Env: "BOTA_BODY_IDLE_TIMEOUT", Default: "2m", Commands: serveOnly,
		Usage: "a request whose body sends no byte for this long is cut off; 0s never cuts", set: duration(func(c *Config) *time.Duration { return &c.BodyIdleTimeout })},
	{Flag: "job-rescue-after", Env: "BOTA_JOB_RESCUE_AFTER", Default: "12h", Commands: serveOnly,
		Usage: "a job running this long on a node that stopped or hung is run again; a transcription attempt may take 30m plus the recording's length, up to a minute less than this", set: duration(func(c *Config) *time.Duration { return &c.JobRescueAfter })},
	{Flag: "webhook-workers", Env: "BOTA_WEBHOOK_WORKERS", Default: "20", Commands: serveOnly,
		Usage: "webhook deliveries sent at once by this node", set: positive(func(c *Config) *int { return &c.WebhookWorkers })},
	{Flag: "webhook-endpoint-concurrency", Env: "BOTA_WEBHOOK_ENDPOINT_CONCURRENCY", Default: "5", Commands: serveOnly,
		Usage: "maximum deliveries in flight to one webhook endpoint across all nodes", set: positive(func(c *Config) *int { return &c.WebhookEndpointConcurrency })},
	{Flag: "webhook-allow-private", Env: "BOTA_WEBHOOK_ALLOW_PRIVATE", Default: "false", Commands: serveOnly,
		Usage: "allow webhook URLs on loopback, private and link-local addresses", set: boolean(func(c *Config) *bool { return &c.WebhookPrivate })},
	{Flag: "shutdown-timeout", Env: "BOTA_SHUTDOWN_TIMEOUT", Default: "30s", Commands: serveOnly,
		Usage: "how long in-flight requests and jobs get to finish on SIGINT or SIGTERM", set: duration(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
}

func (o Option) for_(command string) bool {
	if len(o.Commands) == 0 {
		return true
	}
	for _, c := range o.Commands {
		if c == command {
			return true
		}
	}
	return false
}

// Bind registers the options of command on fs and returns a function that
// resolves the final Config after fs.Parse.
func Bind(fs *flag.FlagSet, command string, getenv func(string) string) func() (*Config, error) {
	values := map[string]*string{}
	for _, o := range Options {
		if !o.for_(command) {
			continue
		}
		usage := fmt.Sprintf("%s (env %s, default %q)", o.Usage, o.Env, o.Default)
		if o.Default == "true" || o.Default == "false" {
			v := &boolValue{}
			fs.Var(v, o.Flag, usage)
			values[o.Flag] = &v.value
			continue
		}
		values[o.Flag] = fs.String(o.Flag, "", usage)
	}
	return func() (*Config, error) {
		explicit := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
		c := &Config{}
		var errs []error
		for _, o := range Options {
			v := o.Default
			env, ok, err := lookup(getenv, o)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ok {
				v = env
			}
			if p := values[o.Flag]; p != nil && explicit[o.Flag] {
				v = *p
			}
			if err := o.set(c, v); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", o.Flag, err))
			}
		}
		return c, errors.Join(errs...)
	}
}

// lookup reads an option's environment variable, or for secrets the file
// its _FILE variable names. A _FILE that cannot be read is an error, so a
// failed secret mount stops the server instead of running without it.
func lookup(getenv func(string) string, o Option) (string, bool, error) {
	if v := getenv(o.Env); v != "" {
		return v, true, nil
	}
	if !o.Secret {
		return "", false, nil
	}
	path := getenv(o.Env + "_FILE")
	if path == "" {
		return "", false, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false, fmt.Errorf("%s_FILE: read %s: %w", o.Env, path, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

// boolValue lets a boolean option be given as a bare flag
// (--webhook-allow-private) as well as with a value (=true).
type boolValue struct{ value string }

func (b *boolValue) String() string   { return b.value }
func (b *boolValue) IsBoolFlag() bool { return true }

func (b *boolValue) Set(v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return fmt.Errorf("must be true or false, got %q", v)
	}
	b.value = v
	return nil
}

// ParseSize reads a byte count such as 2048, 64MiB or 2GiB.
func ParseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	num := strings.TrimSpace(v)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(num, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("must be a positive size such as 2GiB, got %q", v)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n * mult, nil
}

// WriteTable prints the options as a Markdown table, for the README.
func WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| flag | environment | default | meaning |")
	fmt.Fprintln(tw, "|---|---|---|---|")
	for _, o := range Options {
		env := "`" + o.Env + "`"
		if o.Secret {
			env += " (also `" + o.Env + "_FILE`)"
		}
		def := "`" + o.Default + "`"
		if o.Default == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "| `--%s` | %s | %s | %s |\n", o.Flag, env, def, o.Usage)
	}
	tw.Flush()
}
