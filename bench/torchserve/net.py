"""The network of TorchServe's MNIST example, written for this bench: two 3x3 convolutions
(32 and 64 channels), one 2x2 max-pool, dropout, two dense layers, log-probabilities.

The model archiver wants a file holding exactly one nn.Module class: this one.
"""
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)   # 28 -> 26
        self.conv2 = nn.Conv2d(32, 64, 3)  # 26 -> 24, pooled to 12
        self.drop_conv = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.drop_fc = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = self.drop_fc(F.relu(self.fc1(torch.flatten(self.drop_conv(x), 1))))
        return F.log_softmax(self.fc2(x), dim=1)
