package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzHandler feeds arbitrary methods, paths and bodies to the API: it must
// answer every request with a defined status and a message for errors,
// never panic.
func FuzzHandler(f *testing.F) {
	for _, s := range [][3]string{
		{"PUT", "/k", "v"}, {"GET", "/k?consistency=serializable", ""}, {"DELETE", "/a/b", ""},
		{"POST", "/4", "http://127.0.0.1:1"}, {"POST", "/admin/members/5", "x"},
		{"DELETE", "/admin/members/0", ""}, {"GET", "/%00", ""}, {"PATCH", "/", ""},
		{"GET", "/admin/status", ""}, {"PUT", "/v3/kv/put", "{}"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	allowed := map[int]bool{200: true, 204: true, 400: true, 404: true, 405: true, 409: true, 413: true}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") || !strings.HasPrefix(path, "/") {
			return // not a request a client could send
		}
		req, err := http.NewRequest(method, "http://metcd"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		h := NewHandler(newFake(), Options{MaxRequestBytes: 64})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		// ServeMux redirects unclean endpoint paths (/admin/./status) to
		// their clean form; keys are never cleaned.
		redirect := rec.Code == 301 || rec.Code == 307 || rec.Code == 308
		if !allowed[rec.Code] && !(redirect && isReserved(strings.TrimPrefix(req.URL.Path, "/"))) {
			t.Fatalf("%s %q: unexpected status %d (%s)", method, path, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && rec.Code != 405 && rec.Body.Len() == 0 {
			t.Fatalf("%s %q: status %d without a message", method, path, rec.Code)
		}
	})
}
