package speaker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReadStateTruncatesLongReason(t *testing.T) {
	tests := []struct {
		name      string
		reason    string
		want      string
		truncated bool
	}{
		{"short", "kernel upgrade", "kernel upgrade", false},
		{"at the limit", strings.Repeat("x", MaxDrainReason), strings.Repeat("x", MaxDrainReason), false},
		{"3 MiB", strings.Repeat("x", 3<<20), strings.Repeat("x", MaxDrainReason), true},
		// 2-byte runes from byte 1 on: byte 256 would split one.
		{"multibyte", "x" + strings.Repeat("é", 200), "x" + strings.Repeat("é", 127), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			b, _ := json.Marshal(State{Drained: true, Reason: tt.reason})
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			st, truncated, err := readState(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Reason != tt.want || truncated != tt.truncated || !st.Drained {
				t.Errorf("got %d-byte reason, truncated %v, drained %v; want %d bytes, truncated %v", len(st.Reason), truncated, st.Drained, len(tt.want), tt.truncated)
			}
		})
	}
}

func TestStateFileIsADirectory(t *testing.T) {
	dir := t.TempDir()
	want := "is a directory; remove it (rmdir) or set api.stateFile to a file path such as " + dir + "/state.json"
	if _, err := ReadState(dir); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ReadState: %v; want the fix %q", err, want)
	}
	if err := WriteState(dir, State{Drained: true}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("WriteState: %v; want the fix %q", err, want)
	}
}

// FuzzReadState: a state file is read at every start; whatever is in it
// must give a State within bounds or an error naming the fix, never a
// panic, and what vipcast writes it must read back the same.
func FuzzReadState(f *testing.F) {
	f.Add([]byte(`{"drained": true, "reason": "kernel upgrade", "at": "2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"drained": false}`))
	f.Add([]byte(`{"drained": true, "reason": "` + strings.Repeat("x", 300) + `"}`))
	f.Add([]byte(`{"drained": true, "reason": "x` + strings.Repeat("é", 200) + `"}`))
	f.Add([]byte(`{"drained": "yes"}`))
	f.Add([]byte(`{"at": "yesterday"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte("{\"reason\": \"\xff\xfe\"}"))
	f.Add([]byte(``))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "state.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, _, err := readState(path)
		if err != nil {
			if !strings.Contains(err.Error(), "fix or delete it") {
				t.Fatalf("error without the fix: %v", err)
			}
			return
		}
		if len(st.Reason) > MaxDrainReason || !utf8.ValidString(st.Reason) {
			t.Fatalf("reason of %d bytes (valid UTF-8: %v) accepted", len(st.Reason), utf8.ValidString(st.Reason))
		}
		// WriteState's content, without its fsyncs: they make the fuzzer
		// crawl on a busy disk.
		b, err := encodeState(st)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		back, truncated, err := readState(path)
		if err != nil || truncated || back.Drained != st.Drained || back.Reason != st.Reason || !back.At.Equal(st.At) {
			t.Fatalf("round trip: wrote %+v, read %+v, truncated %v, %v", st, back, truncated, err)
		}
	})
}
