"""tools/benchmark_official_vistr.py without the official code: the CPU deformable-convolution op
that
stands in for the official CUDA one (offset layout (dy, dx) per tap, row-major taps), the import
shim on
a fabricated stand-in package, the official argument defaults, and the argument checks."""

import sys

import pytest
import torch
import torch.nn.functional as F
from tests.tools.tool_loading import load_tool


def _load_tool():
    return load_tool("benchmark_official_vistr.py")


@pytest.mark.parametrize(
    "stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), ((1, 2), (1, 0), 1)]
)
def test_zero_offsets_give_the_plain_convolution(stride, padding, dilation):
    tool = _load_tool()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 11, 13, generator=g)
    weight = torch.randn(4, 6, 3, 3, generator=g)
    expected = F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation)
    offset = torch.zeros(2, 18, *expected.shape[-2:])
    out = tool.cpu_deform_conv(x, offset, weight, stride, padding, dilation, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tap,dy,dx", [((0, 2), 1, -1), ((2, 1), -2, 0), ((1, 0), 0, 3)])
def test_offsets_are_dy_dx_per_tap_in_row_major_order(tap, dy, dx):
    """Only kernel tap (i, j) has weight, and only its offset pair is set: channels 2 (3 i + j) and
    2 (3 i + j) + 1 hold (dy, dx), so out[:, :, y, x] = W[:, :, i, j] @ in[:, :, y - 1 + i + dy, x -
    1 + j + dx]
    (zero outside the image; integer offsets sample pixels exactly)."""
    tool = _load_tool()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 9, 10, generator=g)
    weight = torch.zeros(5, 3, 3, 3)
    i, j = tap
    weight[:, :, i, j] = torch.randn(5, 3, generator=g)
    offset = torch.zeros(1, 18, 9, 10)
    offset[:, 2 * (3 * i + j)] = dy
    offset[:, 2 * (3 * i + j) + 1] = dx
    out = tool.cpu_deform_conv(x, offset, weight, (1, 1), (1, 1), (1, 1), 1, 1)
    pad = 4
    xp = F.pad(x, (pad, pad, pad, pad))
    r0, c0 = pad - 1 + i + dy, pad - 1 + j + dx
    expected = torch.einsum(
        "oc,bchw->bohw", weight[:, :, i, j], xp[:, :, r0 : r0 + 9, c0 : c0 + 10]
    )
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_group_arguments_are_checked_against_the_shapes():
    tool = _load_tool()
    x, weight = torch.randn(1, 4, 5, 5), torch.randn(2, 4, 3, 3)
    with pytest.raises(ValueError, match="offset has 18 channels"):
        tool.cpu_deform_conv(x, torch.zeros(1, 18, 5, 5), weight, 1, 1, 1, 1, 2)
    with pytest.raises(ValueError, match="groups"):
        tool.cpu_deform_conv(x, torch.zeros(1, 18, 5, 5), weight, 1, 1, 1, 2, 1)
    assert tool.cpu_deform_conv(x, torch.zeros(1, 36, 5, 5), weight, 1, 1, 1, 1, 2).shape == (
        1,
        2,
        5,
        5,
    )


def test_shim_makes_a_cuda_only_dcn_module_run_on_cpu(tmp_path, monkeypatch):
    """A fabricated package with the official layout: deform_conv.py imports the compiled `_C` and
    its `deform_conv` op refuses CPU tensors; after the shim the layer runs through torchvision."""
    tool = _load_tool()
    dcn = tmp_path / "models" / "dcn"
    dcn.mkdir(parents=True)
    (tmp_path / "models" / "__init__.py").write_text("from .dcn.deform_conv import DeformConv\n")
    (dcn / "deform_conv.py").write_text(
        "import torch\nfrom . import _C\n\n"
        "def deform_conv(*args):\n    raise NotImplementedError('Deformable Conv is not supported "
        "on CPUs!')\n\n"
        "class DeformConv(torch.nn.Module):\n"
        "    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, groups=1, "
        "deformable_groups=1):\n"
        "        super().__init__()\n"
        "        self.stride, self.padding, self.dilation = (stride,) * 2, (padding,) * 2, "
        "(dilation,) * 2\n"
        "        self.groups, self.deformable_groups = groups, deformable_groups\n"
        "        self.weight = torch.nn.Parameter(torch.randn(cout, cin // groups, k, k))\n"
        "    def forward(self, x, offset):\n"
        "        return deform_conv(x, offset, self.weight, self.stride, self.padding, "
        "self.dilation,\n"
        "                           self.groups, self.deformable_groups)\n"
    )
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        tool.install_dcn_shim()
        from models import DeformConv

        layer = DeformConv(4, 3, 3, padding=1)
        x = torch.randn(2, 4, 6, 7)
        out = layer(x, torch.zeros(2, 18, 6, 7))
        torch.testing.assert_close(out, F.conv2d(x, layer.weight, padding=1), rtol=1e-4, atol=1e-4)
        with pytest.raises(RuntimeError, match="not available"):
            sys.modules["models.dcn._C"].deform_conv_forward()
    finally:
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]


def test_official_defaults_and_argument_checks(tmp_path, capsys):
    tool = _load_tool()
    a = tool.official_args(36)
    assert (a.hidden_dim, a.num_frames, a.num_queries, a.masks, a.aux_loss, a.dilation) == (
        384,
        36,
        360,
        True,
        True,
        False,
    )
    assert (a.backbone, a.lr_backbone > 0, a.dataset_file, a.device, a.position_embedding) == (
        "resnet50",
        True,
        "ytvos",
        "cpu",
        "sine",
    )
    assert (a.enc_layers, a.dec_layers, a.dim_feedforward, a.nheads, a.dropout, a.pre_norm) == (
        6,
        6,
        2048,
        8,
        0.1,
        False,
    )

    with pytest.raises(SystemExit):
        tool.parse_args(["--official-root", str(tmp_path), "--frames", "2"])
    assert "no `models` package" in capsys.readouterr().err
    (tmp_path / "models").mkdir()
    (tmp_path / "util").mkdir()
    args = tool.parse_args(
        ["--official-root", str(tmp_path), "--frames", "5", "10", "--size", "64", "96"]
    )
    assert (args.frames, args.size, args.threads, args.repeats, args.backbone) == (
        [5, 10],
        [64, 96],
        2,
        2,
        "resnet50",
    )
    with pytest.raises(SystemExit):
        tool.parse_args(["--official-root", str(tmp_path), "--frames", "0"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--official-root", str(tmp_path), "--frames", "5", "10", "--child"])
