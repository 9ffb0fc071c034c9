"""The networks, kept small enough to train on 2 CPU cores.

* :class:`UNet`: a compact U-Net (conv-BN-ReLU x2 per level, bilinear
  up-sampling, skip connections). With 11 sigmoid outputs it is the
  multi-label segmentation model (segments overlap, so no softmax).
* :class:`ResUNet` and :class:`UNetPlusPlus`: the seeds' other two
  segmentation families, selectable for the segmentation tasks
  (``--architecture``) so the choice is measured, not assumed.
* :class:`SGRLandmarkNet`: segmentation-guided coordinate regression. A U-Net
  segments a small disc around every landmark; its probabilities, concatenated
  with the image, feed a small dilated CNN that produces one score map per
  landmark; a spatial soft-argmax turns each map into exactly one (x, y), so a
  landmark can be neither missed nor duplicated. Presence (null landmarks) is
  decided afterwards from the disc peak and the segmentation, never here.
* :class:`ViewNet`: a small strided CNN that says whether a film is an AP view
  (or a lateral, or a frog-leg lateral) for the analysis's content check.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Compact U-Net returning logits of shape (N, out_ch, H, W); H, W divisible by 2**depth."""

    def __init__(self, in_ch: int, out_ch: int, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        chans = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([ConvBlock(in_ch, chans[0])])
        self.down.extend(ConvBlock(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(ConvBlock(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1-projected) shortcut, then ReLU: MONAI's residual unit."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut = (
            nn.Identity() if in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResUNet(UNet):
    """The :class:`UNet` with residual blocks at every level (the seeds' MONAI ResUNet, in this project's layout)."""

    def __init__(self, in_ch: int, out_ch: int, base: int = 16, depth: int = 4) -> None:
        super().__init__(in_ch, out_ch, base, depth)
        chans = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([ResidualBlock(in_ch, chans[0])])
        self.down.extend(ResidualBlock(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(ResidualBlock(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth)))


class UNetPlusPlus(nn.Module):
    """U-Net++ (Zhou et al. 2018): nested, densely connected skip pathways; logits from the top node.

    Node X[i][j] (level i, j-th node along the skip path) convolves the
    concatenation of X[i][0..j-1] and the up-sampled X[i+1][j-1]. No deep
    supervision: one head on X[0][depth], so it exports like :class:`UNet`.
    """

    def __init__(self, in_ch: int, out_ch: int, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        chans = [base * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.encoder = nn.ModuleList([ConvBlock(in_ch, chans[0])])
        self.encoder.extend(ConvBlock(chans[i], chans[i + 1]) for i in range(depth))
        # columns[j - 1][i] is X[i][j], j >= 1, i + j <= depth: registered in the order forward runs them,
        # which is the order the exported graph lists their convolutions in (warm_start relies on it)
        self.columns = nn.ModuleList(
            nn.ModuleList(ConvBlock(chans[i] * j + chans[i + 1], chans[i]) for i in range(depth - j + 1))
            for j in range(1, depth + 1)
        )
        self.head = nn.Conv2d(chans[0], out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid: list[list[torch.Tensor]] = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            grid.append([x])
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                below = grid[i + 1][j - 1]
                up = F.interpolate(below, size=grid[i][0].shape[-2:], mode="bilinear", align_corners=False)
                grid[i].append(self.columns[j - 1][i](torch.cat([*grid[i][:j], up], dim=1)))
        return self.head(grid[0][self.depth])


SEGMENTATION_ARCHITECTURES: dict[str, type[nn.Module]] = {"unet": UNet, "resunet": ResUNet, "unetpp": UNetPlusPlus}
"""The segmentation networks ``hipnode train segment --architecture`` offers; all map (N, 1, H, W) to logits."""


def soft_argmax(scores: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Expected (x, y) in pixels of softmax(beta * scores) over each map: (N, C, H, W) -> (N, C, 2)."""
    n, c, h, w = scores.shape
    prob = torch.softmax(beta * scores.reshape(n, c, h * w), dim=-1).reshape(n, c, h, w)
    xs = torch.arange(w, dtype=scores.dtype, device=scores.device)
    ys = torch.arange(h, dtype=scores.dtype, device=scores.device)
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


class SGRLandmarkNet(nn.Module):
    """Disc U-Net + regression CNN; forward returns (disc_logits, coordinates_px)."""

    def __init__(self, n_landmarks: int, base: int = 16, depth: int = 4, reg_ch: int = 48) -> None:
        super().__init__()
        self.disc_net = UNet(1, n_landmarks, base=base, depth=depth)
        self.regressor = nn.Sequential(
            nn.Conv2d(n_landmarks + 1, reg_ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(reg_ch, reg_ch, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(reg_ch, reg_ch, 3, padding=4, dilation=4),
            nn.ReLU(inplace=True),
            nn.Conv2d(reg_ch, n_landmarks, 3, padding=1),
        )
        # Prior: the regression starts from the disc logits and learns a residual.
        self.prior_weight = nn.Parameter(torch.tensor(1.0))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        disc_logits = self.disc_net(image)
        disc_prob = torch.sigmoid(disc_logits)
        scores = self.prior_weight * disc_logits + self.regressor(torch.cat([image, disc_prob], dim=1))
        return disc_logits, soft_argmax(scores)


class ViewNet(nn.Module):
    """Image classifier: ``depth`` ConvBlocks, each followed by 2x2 max pooling, then global pooling.

    Mean and max pooling both feed the linear layer: a lateral shows in the
    overall shape of the film, a frog-leg femur in a small part of it.
    """

    def __init__(self, n_classes: int, base: int = 8, depth: int = 4, in_ch: int = 1) -> None:
        super().__init__()
        chans = [in_ch] + [base * 2**i for i in range(depth)]
        self.blocks = nn.ModuleList(ConvBlock(chans[i], chans[i + 1]) for i in range(depth))
        self.head = nn.Linear(2 * chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = F.max_pool2d(block(x), 2)
        return self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))


class ExportSegmentation(nn.Module):
    """ONNX wrapper: image (N,1,H,W) -> probabilities (N,C,H,W)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image))


class ExportLandmarks(nn.Module):
    """ONNX wrapper: image -> (disc probabilities (N,L,H,W), coordinates (N,L,2) in pixels)."""

    def __init__(self, net: SGRLandmarkNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        disc_logits, coords = self.net(image)
        return torch.sigmoid(disc_logits), coords


class ExportView(nn.Module):
    """ONNX wrapper: input maps (N,C_in,H,W) -> class probabilities (N,C)."""

    def __init__(self, net: ViewNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(image), dim=1)
