"""A peer side by side: TorchServe serving its MNIST example against this project's server.

`make bench-torchserve` (optional, never part of `make test`): bench/torchserve/prepare.py trains the
example's network for one epoch and archives it with bench/torchserve/handler.py (run in
.venv-torchserve, which has torch and TorchServe); `python -m bench.torchserve` starts both servers
and drives them with the same 28x28 PNG, interleaved.
"""
