package peers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadPassword: a password file (a mounted Secret) gives a key the
// kernel accepts (1..80 bytes, no trailing newline) or a clear error.
func FuzzReadPassword(f *testing.F) {
	for _, s := range []string{"s3cret-md5-key\n", "s3cret\r\n", "", "\n", strings.Repeat("k", 80), strings.Repeat("k", 81) + "\n", "a\x00b", "\xff\xfe\n"} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "md5")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pw, err := ReadPassword(path)
		if err != nil {
			if cerr := checkPasswordFile(path); cerr == nil || !strings.Contains(cerr.Error(), "point it at a readable file") {
				t.Fatalf("ReadPassword failed (%v) but the config check says %v", err, cerr)
			}
			return
		}
		if pw == "" || len(pw) > 80 || strings.HasSuffix(pw, "\n") || strings.HasSuffix(pw, "\r") {
			t.Fatalf("key %q accepted", pw)
		}
	})
}
