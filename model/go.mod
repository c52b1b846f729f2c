module github.com/planets-mlops/deploy/model

go 1.26.0

require (
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/yalue/onnxruntime_go v1.27.0 // indirect
)
