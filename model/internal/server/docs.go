package server

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strings"
)

//go:embed openapi.json
var openAPIDocument []byte

// docs is the /docs page, rendered once from the OpenAPI document so the two
// cannot disagree. It is plain HTML: no scripts or assets from elsewhere,
// which a cluster without internet access could not load.
type docs struct {
	html []byte
}

type openAPI struct {
	Info struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	} `json:"info"`
	Paths map[string]map[string]struct {
		Summary     string `json:"summary"`
		Description string `json:"description"`
		Responses   map[string]struct {
			Description string `json:"description"`
		} `json:"responses"`
	} `json:"paths"`
}

type docsOperation struct {
	Method, Path, Summary, Description string
	Responses                          [][2]string // status, description
}

var docsTemplate = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
code,pre{background:#f3f3f3;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}
.op{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}.m{font-weight:bold;text-transform:uppercase}</style>
</head><body>
<h1>{{.Title}} <small>{{.Version}}</small></h1>
<p>{{.Description}}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<pre>curl -F file=@earth.jpg http://HOST:8080/predict
curl -H 'Content-Type: image/jpeg' --data-binary @earth.jpg http://HOST:8080/predict</pre>
{{range .Operations}}<div class="op"><h2><span class="m">{{.Method}}</span> <code>{{.Path}}</code></h2>
<p><b>{{.Summary}}</b></p>{{if .Description}}<p>{{.Description}}</p>{{end}}
<ul>{{range .Responses}}<li><code>{{index . 0}}</code> {{index . 1}}</li>{{end}}</ul></div>
{{end}}</body></html>
`))

func mustDocs() docs {
	var doc openAPI
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		panic("embedded openapi.json: " + err.Error()) // a build-time mistake, caught by tests
	}
	var ops []docsOperation
	for path, methods := range doc.Paths {
		for method, op := range methods {
			o := docsOperation{Method: method, Path: path, Summary: op.Summary, Description: op.Description}
			for code, resp := range op.Responses {
				o.Responses = append(o.Responses, [2]string{code, resp.Description})
			}
			slices.SortFunc(o.Responses, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
			ops = append(ops, o)
		}
	}
	// /predict first, then alphabetical.
	slices.SortFunc(ops, func(a, b docsOperation) int {
		if (a.Path == "/predict") != (b.Path == "/predict") {
			if a.Path == "/predict" {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Path, b.Path)
	})
	var buf bytes.Buffer
	err := docsTemplate.Execute(&buf, map[string]any{
		"Title": doc.Info.Title, "Version": doc.Info.Version, "Description": doc.Info.Description, "Operations": ops,
	})
	if err != nil {
		panic("render /docs: " + err.Error())
	}
	return docs{html: buf.Bytes()}
}

func (s *Server) handleDocs(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(s.docs.html)
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDocument)
}
