"""The bench's TorchServe handler, behaving like the MNIST example's: each request's body is a PNG;
decode -> gray -> 28x28 -> normalize (transform.py), the network on the batch, the argmax per
request. Only runs inside TorchServe: the archive holds this file, transform.py and preprocess.json
at its root, which TorchServe puts on the worker's import path.
"""
import json
import os

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

from transform import to_input


class DigitHandler(BaseHandler):
    def initialize(self, context):
        super().initialize(context)  # loads net.py's Net with the archived state dict, in eval mode
        with open(os.path.join(context.system_properties["model_dir"], "preprocess.json")) as f:
            self.preprocess_args = json.load(f)  # {"size", "mean", "std"}: train/mnist.py's, at archive time

    def preprocess(self, data):
        # TorchServe hands one dict per request: the raw body under "body" (or a form field "data").
        images = [to_input(bytes(row.get("data") or row.get("body")), **self.preprocess_args) for row in data]
        return torch.from_numpy(np.stack(images))

    def postprocess(self, data):
        return data.argmax(1).tolist()  # one digit per request, in the batch's order
