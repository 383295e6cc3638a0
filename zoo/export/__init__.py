"""`zoo export`: a finished run as an ONNX model that onnxruntime runs without zoo or torch.

``graph`` traces the classifier into ONNX, ``quantize`` makes int8 models with ONNX Runtime's quantizers,
``runtime`` runs an exported model (and feeds it from the family's preprocessing), ``parity`` compares it with the
torch model on data, and ``folder`` lays out, records and describes an export folder.
"""
