"""ONNX export of the image encoder and the click decoder (:func:`seem.onnx.export.export_onnx`); needs the
``onnx`` extra. Importing this package imports neither onnx nor onnxruntime."""
