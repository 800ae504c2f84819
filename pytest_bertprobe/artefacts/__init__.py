"""Stage 5, artefacts built from a checkpoint: ONNX exports under onnxruntime (`onnx_export`; quantized ones judged
by behaviour in `onnx_quantized`) and the sentence-transformers pipeline (`st_pipeline`). Their libraries are
imported only when an artefact is audited."""
