"""Band sampling, the flow-matching loss and a distillation step, checked against the design doc."""
import pytest
import torch

from streamdit.sampling.partition import Partition, Schedule
from streamdit.train.distill import DistillConfig, distill_loss, segment_starts, teacher_segment
from streamdit.train.flow import PartitionMix, flow_matching_loss, sample_band_u


def test_one_u_per_chunk_inside_its_band():
    g = torch.Generator().manual_seed(0)
    chunks = torch.tensor([1, 2, 4, 8, 16] * 40)
    u = sample_band_u(chunks, 16, g)
    for row, c in zip(u, chunks.tolist()):
        n = 16 // c
        per_chunk = row.view(n, c)
        assert bool((per_chunk == per_chunk[:, :1]).all())  # shared by the chunk's frames
        lo = torch.arange(n, dtype=torch.float64) / n
        assert bool(((per_chunk[:, 0] >= lo) & (per_chunk[:, 0] < lo + 1 / n)).all())  # inside band i
    # uniform within the band: the mean of chunk 1 of c=2 (band [0, 1/8)) is near 1/16
    c2 = u[chunks == 2][:, 0]
    assert abs(c2.mean().item() - 1 / 16) < 0.01


def test_mix_validation():
    with pytest.raises(ValueError, match="do not divide stream_frames=16"):
        PartitionMix(chunk_sizes=(3,), chunk_probs=(1.0,))
    with pytest.raises(ValueError, match="sum to 1"):
        PartitionMix(chunk_sizes=(1, 2), chunk_probs=(0.5, 0.6))
    assert PartitionMix().includes_uniform and not PartitionMix(chunk_sizes=(2,), chunk_probs=(1.0,)).includes_uniform


class Recorder(torch.nn.Module):
    """Returns a fixed prediction and records what it was given."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, context):
        self.x, self.t, self.context = x, t, context
        return torch.zeros_like(x) + self.w


def test_flow_loss_builds_the_noisy_buffer_and_excludes_references():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 2, 7, 2, 2)  # one frame more than K + F: the oldest is unused
    mix = PartitionMix(stream_frames=4, chunk_sizes=(2,), chunk_probs=(1.0,), ref_frames=(2,), ref_probs=(1.0,))
    model = Recorder()
    loss, metrics = flow_matching_loss(model, {"latents": x0, "context": ["a pig"] * 3}, mix, Schedule(3.0), g,
                                       text_dropout=0.0)
    assert metrics["refs"] == 2
    t = model.t.double() / 1000
    assert bool((t[:, :2] == 0).all())  # references are clean
    assert bool((t[:, 2] == t[:, 3]).all()) and bool((t[:, 4] == t[:, 5]).all())  # one level per chunk
    torch.testing.assert_close(model.x[:, :, :2], x0[:, :, 1:3])  # the last K + F frames, references exact
    # reproduce the loss: the same generator draws give the same eps
    g2 = torch.Generator().manual_seed(1)
    mix.sample_refs(g2)
    chunks = mix.sample_chunks(3, g2)
    sample_band_u(chunks, 4, g2)
    eps = torch.randn((3, 2, 6, 2, 2), generator=g2)
    target = (eps - x0[:, :, 1:])[:, :, 2:]
    torch.testing.assert_close(loss, target.pow(2).mean())
    # sprite weighting: masks of the denoised frames (plus a one-cell border) weigh 1 + w
    masks = torch.zeros(3, 7, 2, 2, dtype=torch.bool)
    masks[0, 6, 0, 0] = True  # the last frame of sample 0; frame 0 (unused) is ignored
    masks[1, 0, 1, 1] = True
    loss_w, _ = flow_matching_loss(model, {"latents": x0, "context": ["a pig"] * 3, "masks": masks}, mix,
                                   Schedule(3.0), torch.Generator().manual_seed(1), text_dropout=0.0,
                                   sprite_weight=9.0)
    w = torch.ones(3, 1, 4, 2, 2)
    w[0, :, 3] = 10.0  # the 3x3 neighbourhood of (0, 0) covers the whole 2x2 frame
    torch.testing.assert_close(loss_w, (target.pow(2) * w).sum() / (w.sum() * 2))
    # a noise-level band weighs its frames 1 + boost, every cell alike, on top of the sprite weight
    sigma = t[:, 2:]  # the denoised frames' levels (the same draws: same generator seed)
    band = (sigma >= 0.3) & (sigma <= 0.8)
    assert bool(band.any()) and not bool(band.all())
    loss_b, _ = flow_matching_loss(model, {"latents": x0, "context": ["a pig"] * 3, "masks": masks}, mix,
                                   Schedule(3.0), torch.Generator().manual_seed(1), text_dropout=0.0,
                                   sprite_weight=9.0, sigma_boost=3.0, sigma_band=(0.3, 0.8))
    wb = w * (1 + 3.0 * band.to(w)).view(3, 1, 4, 1, 1)
    torch.testing.assert_close(loss_b, (target.pow(2) * wb).sum() / (wb.sum() * 2))
    loss_p, _ = flow_matching_loss(model, {"latents": x0, "context": ["a pig"] * 3}, mix, Schedule(3.0),
                                   torch.Generator().manual_seed(1), text_dropout=0.0, sigma_boost=3.0,
                                   sigma_band=(0.3, 0.8))
    wp = (1 + 3.0 * band.to(w)).view(3, 1, 4, 1, 1).expand(3, 1, 4, 2, 2)
    torch.testing.assert_close(loss_p, (target.pow(2) * wp).sum() / (wp.sum() * 2))
    with pytest.raises(ValueError, match="needs sprite masks"):
        flow_matching_loss(model, {"latents": x0, "context": ["a pig"] * 3}, mix, Schedule(3.0), g, 0.0, 9.0)


def test_sprite_gate_by_frame_or_by_the_buffers_cleanest_frame():
    """"frame": each frame by its own level; "context": every frame of a buffer whose cleanest frame (references
    count as level 0) is within the bound, none of a buffer without one."""
    x0 = torch.randn(4, 2, 8, 2, 2)
    masks = torch.ones(4, 8, 2, 2, dtype=torch.bool)  # every cell a sprite cell: the weight is per frame
    batch = {"latents": x0, "context": ["a pig"] * 4, "masks": masks}
    model = Recorder()

    def run(mix, **kw):
        loss, _ = flow_matching_loss(model, batch, mix, Schedule(1.0), torch.Generator().manual_seed(2),
                                     text_dropout=0.0, sprite_weight=9.0, sprite_sigma_max=0.4, **kw)
        sigma = model.t.double() / 1000
        g = torch.Generator().manual_seed(2)
        k = mix.sample_refs(g)
        sample_band_u(mix.sample_chunks(4, g), mix.stream_frames, g)
        eps = torch.randn((4, 2, k + mix.stream_frames, 2, 2), generator=g)
        err = (eps - x0[:, :, 8 - k - mix.stream_frames:]).pow(2)[:, :, k:]
        return loss, sigma, k, err

    def weighted(err, on):  # on [B, F]: frames weighing 1 + 9
        w = (1 + 9.0 * on.to(err)).view(*on.shape[:1], 1, on.shape[1], 1, 1).expand_as(err[:, :1])
        return (err * w).sum() / (w.sum() * err.shape[1])

    # no references, two chunks (bands [0, 0.5) and [0.5, 1)) or one (the uniform layout), drawn per sample
    mix = PartitionMix(stream_frames=8, chunk_sizes=(4, 8), chunk_probs=(0.5, 0.5))
    loss_f, sigma, _, err = run(mix)
    on_f = sigma <= 0.4
    torch.testing.assert_close(loss_f, weighted(err, on_f))
    loss_c, sigma, _, err = run(mix, sprite_gate="context")
    on_c = (sigma.min(dim=1, keepdim=True).values <= 0.4).expand_as(sigma)
    assert bool((on_c & ~on_f).any())  # the draws include a buffer whose noisier frames only "context" weighs
    torch.testing.assert_close(loss_c, weighted(err, on_c))
    # with clean reference frames every buffer is decided: each frame weighs, whatever its level
    mix_r = PartitionMix(stream_frames=4, chunk_sizes=(4,), chunk_probs=(1.0,), ref_frames=(2,), ref_probs=(1.0,))
    loss_r, sigma, k, err = run(mix_r, sprite_gate="context")
    assert k == 2 and bool((sigma[:, k:] > 0.4).any())
    torch.testing.assert_close(loss_r, weighted(err, torch.ones(4, 4, dtype=torch.bool)))
    with pytest.raises(ValueError, match="sprite_gate must be"):
        run(mix, sprite_gate="clip")


def test_text_dropout_empties_some_prompts():
    g = torch.Generator().manual_seed(0)
    model = Recorder()
    flow_matching_loss(model, {"latents": torch.randn(200, 1, 2, 1, 1), "context": ["a pig"] * 200},
                       PartitionMix(stream_frames=2, chunk_sizes=(1, 2), chunk_probs=(0.5, 0.5)), Schedule(), g, 0.1)
    dropped = sum(c == "" for c in model.context)
    assert 8 <= dropped <= 35


def point_mass_velocity(x0: torch.Tensor):
    """The exact velocity field of data x0 (repeated for guidance's doubled batch); junk at sigma 0."""
    def velocity(x, t, context):
        s = (t.double() / 1000).view(x.shape[0], 1, -1, 1, 1)
        target = torch.cat([x0] * (x.shape[0] // x0.shape[0]))
        return torch.where(s > 0, (x - target) / s.clamp(min=1e-9), torch.full_like(x, 1e6))
    return velocity


def test_segment_layout_and_teacher_segment_on_point_mass():
    p = Partition(chunks=4, chunk_frames=2, micro_steps=3)
    g = torch.Generator().manual_seed(0)
    u0, u1 = segment_starts(p, 4, torch.tensor([False, True, False, True]), g)
    assert u0[0].tolist() == [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    assert len(set(u0[1].tolist())) == 1 and torch.allclose(u0 - u1, torch.full_like(u0, 0.25))
    # exact velocity of a point mass: the teacher's micro steps land exactly on the trajectory
    sch = Schedule(2.0)
    x0 = torch.randn(4, 3, 8, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x0)
    s0 = sch.sigmas(u0).view(4, 1, -1, 1, 1)

    x_end = teacher_segment(point_mass_velocity(x0), (1 - s0) * x0 + s0 * eps, u0, p, sch, None, None, cfg_scale=1.0)
    s1 = sch.sigmas(u1).view(4, 1, -1, 1, 1)
    assert float((x_end - ((1 - s1) * x0 + s1 * eps)).abs().max()) < 1e-5  # t passes through float32


def test_distillation_step_reduces_its_loss():
    torch.manual_seed(0)
    from streamdit.network.config import ModelConfig
    from streamdit.network.model import WanDiT

    cfg = ModelConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=1, in_dim=4, out_dim=4, text_dim=8, text_len=4,
                      freq_dim=16)
    teacher, student = WanDiT(cfg), WanDiT(cfg)
    for m in (teacher, student):
        m.init_weights(0)
        with torch.no_grad():
            for prm in m.parameters():
                prm.add_(torch.randn_like(prm) * 0.05)
    student.load_state_dict(teacher.state_dict())
    batch = {"latents": torch.randn(4, 4, 8, 4, 4), "context": torch.randn(4, 4, 8)}
    config = DistillConfig(Partition(chunks=4, chunk_frames=2, micro_steps=2), cfg_scale=2.0)
    opt = torch.optim.Adam(student.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        loss, _ = distill_loss(student, teacher, batch, config, Schedule(), torch.Generator().manual_seed(5))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_distillation_with_reference_frames_keeps_them_clean_and_out_of_the_loss():
    p = Partition(chunks=2, chunk_frames=2, micro_steps=2, ref_frames=3)
    g = torch.Generator().manual_seed(0)
    u0, u1 = segment_starts(p, 2, torch.tensor([False, True]), g)
    assert u0[0].tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0] and u1[0].tolist() == [0.0] * 5 + [0.5] * 2
    assert len(set(u0[1].tolist())) == 1 and u0[1, 0] > 0  # the uniform pass includes the reference frames
    sch = Schedule(1.0)
    x0 = torch.randn(2, 3, 7, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x0)
    s0 = sch.sigmas(u0).view(2, 1, -1, 1, 1)

    x_start = (1 - s0) * x0 + s0 * eps
    x_end = teacher_segment(point_mass_velocity(x0), x_start, u0, p, sch, None, None, cfg_scale=1.0)
    torch.testing.assert_close(x_end[0, :, :3], x0[0, :, :3])  # references untouched despite their velocity
    s1 = sch.sigmas(u1).view(2, 1, -1, 1, 1)
    assert float((x_end - ((1 - s1) * x0 + s1 * eps)).abs().max()) < 1e-5

    class Probe(torch.nn.Module):
        def __init__(self, junk_refs: bool):
            super().__init__()
            self.w, self.junk = torch.nn.Parameter(torch.ones(())), junk_refs

        def forward(self, x, t, context):
            out = self.w * x
            if self.junk:  # a student that is wrong only on the (streaming) reference frames
                out = out.clone()
                out[:, :, :3] += 100.0 * (t[:, :3] == 0).view(x.shape[0], 1, 3, 1, 1)
            return out

    teacher = Probe(False)
    batch = {"latents": torch.randn(4, 3, 9, 2, 2), "context": torch.randn(4, 4, 8)}
    config = DistillConfig(p, cfg_scale=1.0, uniform_fraction=0.0)
    a, _ = distill_loss(Probe(False), teacher, batch, config, sch, torch.Generator().manual_seed(3))
    b, _ = distill_loss(Probe(True), teacher, batch, config, sch, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="teacher's buffer holds 7"):
        distill_loss(Probe(False), teacher, {"latents": torch.randn(4, 3, 6, 2, 2), "context": None}, config, sch,
                     torch.Generator().manual_seed(3))


def test_uniform_samples_can_take_their_targets_from_another_teacher():
    class Const(torch.nn.Module):  # velocity `a` everywhere: the target of every moved frame is exactly `a`
        def __init__(self, a: float):
            super().__init__()
            self.a = a

        def forward(self, x, t, context):
            return torch.full_like(x, self.a)

    class Oracle(torch.nn.Module):  # 3 on uniform samples (one level for all frames), 1 on streaming ones
        def forward(self, x, t, context):
            uniform = (t == t[:, :1]).all(dim=1).view(-1, 1, 1, 1, 1)
            return torch.where(uniform, 3.0, 1.0).expand_as(x).clone()

    p = Partition(chunks=4, chunk_frames=2, micro_steps=2)
    batch = {"latents": torch.randn(16, 3, 8, 2, 2), "context": [f"prompt {i}" for i in range(16)]}
    for fraction in (0.0, 0.5, 1.0):
        config = DistillConfig(p, cfg_scale=1.0, uniform_fraction=fraction)
        loss, info = distill_loss(Oracle(), Const(1.0), batch, config, Schedule(), torch.Generator().manual_seed(1),
                                  uniform_teacher=Const(3.0))
        assert float(loss) < 1e-8, fraction
        if fraction == 0.5:
            assert 0 < info["uniform_share"] < 1
            one, _ = distill_loss(Oracle(), Const(1.0), batch, config, Schedule(), torch.Generator().manual_seed(1))
            assert float(one) > 0.5  # without it the uniform samples' targets are 1, the oracle says 3


def test_text_conditioned_dit_compiled_view_shares_weights_and_leaves_the_module_plain():
    import copy

    from streamdit.network.config import ModelConfig
    from streamdit.network.model import WanDiT
    from streamdit.network.text import ToyTextEncoder
    from streamdit.train.flow import TextConditionedDiT

    cfg = ModelConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=1, in_dim=4, out_dim=4, text_dim=16, text_len=4,
                      freq_dim=16, patch_size=(1, 2, 2))
    module = TextConditionedDiT(WanDiT(cfg), ToyTextEncoder(["a", "pig"], cfg.text_dim, cfg.text_len))
    view = module.compiled()
    # the DiT compiled over the same parameters; the text encoder (Python strings) stays eager
    assert view.dit._orig_mod is module.dit and view.text_encoder is module.text_encoder
    assert module.dit._compiled_call_impl is None and module._compiled_call_impl is None
    student = copy.deepcopy(module)  # what a student or an EMA is made from: its own forward, its own weights
    assert student.dit._compiled_call_impl is None
