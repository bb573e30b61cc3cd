"""In the car: the stateful frame-by-frame predictor and its ONNX export."""

from steertime.stream.export import OnnxPredictor, export_onnx
from steertime.stream.predictor import Predictor, StreamError, StreamingPredictor

__all__ = ["OnnxPredictor", "Predictor", "StreamError", "StreamingPredictor", "export_onnx"]
