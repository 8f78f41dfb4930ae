"""The Triton runtime's stand-in for ONNX models: onnxruntime behind MLServer's custom-runtime API.

RHOAI serves ONNX with Triton behind the triton adapter (the `triton-gpu` ServingRuntime). The local mesh's
model server is MLServer, so an instance loads an ONNX model through this `mlserver.MLModel`, named in the
model-settings `implementation` the runtime adapter writes (adapter.IMPLEMENTATIONS). Like Triton, it takes the
input and output names, types and shapes from the ONNX graph itself; it runs on the CPU (docs/fidelity.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor, RequestInput
from mlserver.utils import get_model_uri

# The file name the triton adapter gives an ONNX model in Triton's repository layout (<model>/1/model.onnx), for a
# model path that is a directory.
WELLKNOWN_FILENAMES = ["model.onnx"]
# onnxruntime's element types (NodeArg.type) as numpy types; what a request's tensor is cast to.
ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
KSERVE_TYPES = {
    np.float32: "FP32", np.float64: "FP64", np.float16: "FP16", np.int64: "INT64", np.int32: "INT32",
    np.int16: "INT16", np.int8: "INT8", np.uint8: "UINT8", np.bool_: "BOOL",
}


def _shape(arg: Any) -> list[int]:
    """A graph input's or output's shape as KServe v2 metadata gives it: -1 for a symbolic dimension."""
    return [d if isinstance(d, int) else -1 for d in arg.shape]


class OnnxModel(MLModel):
    """An ONNX model file, run with onnxruntime's CPU provider."""

    async def load(self) -> bool:
        uri = await get_model_uri(self._settings, wellknown_filenames=WELLKNOWN_FILENAMES)
        options = onnxruntime.SessionOptions()
        # One thread each: an instance shares two cores with the whole local cluster, and Triton's CPU backend
        # would not get more on a pod limited as these are.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(uri, sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {arg.name: arg for arg in self._session.get_inputs()}
        self.inputs = [MetadataTensor(name=a.name, datatype=KSERVE_TYPES.get(ORT_TYPES.get(a.type), "BYTES"),
                                      shape=_shape(a)) for a in self._session.get_inputs()]
        self.outputs = [MetadataTensor(name=a.name, datatype=KSERVE_TYPES.get(ORT_TYPES.get(a.type), "BYTES"),
                                       shape=_shape(a)) for a in self._session.get_outputs()]
        return True

    def _feeds(self, payload: InferenceRequest) -> dict[str, np.ndarray]:
        """The request's tensors by graph input name. A model with one input takes a request's only tensor
        whatever its name (Triton requires the name; the clients here send the graph's own)."""
        given: list[RequestInput] = list(payload.inputs)
        if len(given) == 1 and len(self._inputs) == 1 and given[0].name not in self._inputs:
            pairs = [(next(iter(self._inputs)), given[0])]
        else:
            unknown = sorted(t.name for t in given if t.name not in self._inputs)
            missing = sorted(set(self._inputs) - {t.name for t in given})
            if unknown or missing:
                raise InferenceError(f"model {self.name}: inputs {sorted(self._inputs)} expected; "
                                     f"unknown {unknown}, missing {missing}")
            pairs = [(t.name, t) for t in given]
        feeds = {}
        for name, tensor in pairs:
            array = np.asarray(self.decode(tensor, default_codec=NumpyCodec))
            wanted = ORT_TYPES.get(self._inputs[name].type)
            feeds[name] = array.astype(wanted, copy=False) if wanted is not None else array
        return feeds

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = self._feeds(payload)
        try:
            results = self._session.run(None, feeds)
        except Exception as error:  # onnxruntime raises its own types (a wrong shape, a wrong rank): one line back
            raise InferenceError(f"model {self.name}: {str(error).splitlines()[0]}") from None
        names = [arg.name for arg in self._session.get_outputs()]
        wanted = {o.name for o in payload.outputs or []}
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=[
            NumpyCodec.encode_output(name, np.asarray(value)) for name, value in zip(names, results, strict=True)
            if not wanted or name in wanted])
