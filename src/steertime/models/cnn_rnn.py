"""CNN encoder -> recurrent core -> head: steering through time.

Options, all in `CnnRnnConfig`:
- `rnn`: lstm | gru | rnn (vanilla tanh), `layers`, `hidden`; or `tcn`, a memory with a
  fixed horizon (`steertime.models.temporal_conv`: `layers` dilated levels of kernel
  `tcn_kernel`, `hidden` channels); or `attn`, attention over recent frames
  (`steertime.models.attention`: `layers` transformer blocks of width `hidden`, each
  reading `attn_window` frames with `attn_heads` heads);
- `front3d` = w > 1: a 3D convolution over the last w frames before the encoder
  (Komanda used 5), so motion — and hence speed — is visible to the encoder;
- `stack` = w > 1: early fusion, as cheap as one frame — the 2D encoder sees the current
  frame and the w-1 differences between consecutive frames before it as channels, so the
  car's own motion (how fast the image turns: the steering it is applying) is visible;
- `autoregressive`: the previous step's outputs are an input of the next step (Komanda).
  `core(..., teacher=y)` feeds the truth back (teacher forcing); without it the model
  feeds back its own predictions, as it must in the car;
- `missing_input`: the recurrent core also reads a "frame missing" flag; on a missing
  frame (dropped, frozen, black, glaring: `steertime.data.faults`) the frame's features
  are zeroed and the flag set, so the state rolls forward on memory alone. Train it with
  `data.faults` so it has seen such frames.
- `hold_on_missing` (needs `missing_input`): a structural prior for blackouts. On a missing
  frame the output is the previous output plus the head's output, read as a learned
  correction (y_t = y_{t-1} + z_t), instead of a fresh output from memory that drifts;
  on a present frame it is the head's output as before. The last output is carried in
  the state (`last`). With `train.spread` only the K means are held (`held_outputs`,
  set by training); the log-spreads come from the head as they are.
- `hold_decay` (with `hold_on_missing`): y_t = a · y_{t-1} + z_t on a missing frame, with a
  learned a in (0, 1) per held output (normalised units: 0 is the training mean), so a long
  blackout can let go of the last command instead of holding it (a tap held for a second
  is worse than steering straight).
- `aux_outputs` (set by `train.aux_leads`): `aux_head` maps each frame's features to the
  outputs some frames later — an auxiliary training target, so the encoder must read the
  road ahead. The streaming path never calls it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from steertime.errors import SteertimeError
from steertime.models.attention import CausalAttention
from steertime.models.base import SequenceModel, State
from steertime.models.encoders import activation, to_float
from steertime.models.registry import create_encoder, encoder_fields, register_model
from steertime.models.temporal_conv import CausalTCN

# name -> torch recurrent layer; `diagnostics.memory` trains the same layers
RECURRENT = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# Cores whose state is their last inputs, not a hidden vector (a fixed horizon):
# `tcn` steertime.models.temporal_conv, `attn` steertime.models.attention
WINDOWED = ("tcn", "attn")
CORES = (*RECURRENT, *WINDOWED)
_CELL = {"gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}
_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _exporting() -> bool:
    # Exporters trace nn.LSTM into one ONNX LSTM node; keep that path for them.
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


@dataclass
class CnnRnnConfig:
    n_outputs: int = 1
    height: int = 66
    width: int = 200
    encoder: str = "pilotnet_conv"
    encoder_cfg: dict = field(default_factory=dict)
    feat_dim: int = 100
    rnn: str = "lstm"
    hidden: int = 64
    layers: int = 1  # stacked recurrent layers, or the temporal convolution's levels
    tcn_kernel: int = 3  # rnn=tcn only: frames each dilated convolution reads
    attn_window: int = 16  # rnn=attn only: frames each block attends (itself included)
    attn_heads: int = 4  # rnn=attn only
    dropout: float = 0.0  # on the head's input (memory + frame features)
    # DropConnect on the recurrent (hidden-to-hidden) weights while training, one mask per
    # chunk (AWD-LSTM, Merity et al. 2018): dropout on the memory path itself.
    weight_drop: float = 0.0
    conv_dropout: float = 0.0  # after every convolution of encoders that take it
    front3d: int = 0
    front3d_channels: int = 8
    stack: int = 0
    autoregressive: bool = False
    skip: bool = True  # the head also sees the frame's own features, not only the memory
    head_hidden: int = 64
    act: str = "elu"  # or "relu" (also passed to the encoder unless encoder_cfg sets it)
    init: str = "torch"  # or "he": the encoder's init, for encoders that take one
    missing_input: bool = False  # a per-frame "frame missing" flag into the core
    hold_on_missing: bool = False  # missing frame: previous output + a learned correction
    held_outputs: int = 0  # the leading outputs held (the means with a spread); 0: all
    hold_decay: bool = False  # missing frame: a learned share a of the previous output held
    # Training only (`train.aux_leads`, set by training): a linear head from each frame's
    # features to the outputs some frames later. Never run at inference nor exported.
    aux_outputs: int = 0
    # Training only (`train.recon_weight`): a linear head from each frame's features to a
    # coarse thumbnail of the frame (its number of pixels). Never run at inference.
    recon_outputs: int = 0
    # ...read from the memory's output instead (`train.recon_lead`: a later frame redrawn)
    recon_memory: bool = False


class CnnRnn(SequenceModel):
    def __init__(self, cfg: CnnRnnConfig) -> None:
        super().__init__()
        if cfg.rnn not in CORES:
            raise SteertimeError(f"rnn must be one of {sorted(CORES)}, got {cfg.rnn!r}")
        self.config = cfg  # also set by create_model; one name for one config
        self.n_outputs = cfg.n_outputs
        self.autoregressive = cfg.autoregressive
        self.missing_input = cfg.missing_input
        if cfg.front3d > 1 and cfg.stack > 1:
            raise SteertimeError("front3d and stack are two ways to see motion: choose one")
        _check_hold(cfg)
        if not 0.0 <= cfg.weight_drop < 1.0 or (cfg.weight_drop and cfg.rnn not in RECURRENT):
            raise SteertimeError(
                f"weight_drop drops the recurrent weights of an lstm/gru/rnn core: it must be "
                f"in [0, 1) with such a core, got {cfg.weight_drop} with rnn={cfg.rnn}"
            )
        self.hold_on_missing = cfg.hold_on_missing
        if cfg.hold_decay:  # logit of a; starts at a = 0.95, close to a plain hold
            self.decay_logit = nn.Parameter(torch.full((self._n_held(),), 2.944))
        # Frames the encoder sees at once (not `OutputLayout.k`, the number of outputs).
        self.window = max(cfg.front3d, cfg.stack, 1)
        in_ch = 3
        if cfg.front3d > 1:
            self.front = nn.Sequential(
                nn.Conv3d(3, cfg.front3d_channels, (self.window, 3, 3), padding=(0, 1, 1)),
                activation(cfg.act),
            )
            in_ch = cfg.front3d_channels
        elif cfg.stack > 1:
            in_ch = 3 * cfg.stack
        enc_cfg = {
            "height": cfg.height,
            "width": cfg.width,
            "in_channels": in_ch,
            **({"act": cfg.act} if "act" in encoder_fields(cfg.encoder) else {}),
            **({"init": cfg.init} if "init" in encoder_fields(cfg.encoder) else {}),
            **({"conv_dropout": cfg.conv_dropout} if cfg.conv_dropout else {}),
            **cfg.encoder_cfg,
        }
        self.encoder = create_encoder(cfg.encoder, **enc_cfg)
        self.project = nn.Sequential(
            nn.Linear(self.encoder.out_dim, cfg.feat_dim), activation(cfg.act)
        )
        rnn_in = cfg.feat_dim + (cfg.n_outputs if cfg.autoregressive else 0)
        rnn_in += 1 if cfg.missing_input else 0
        self.rnn_in = rnn_in
        if cfg.rnn == "tcn":
            self.rnn = CausalTCN(rnn_in, cfg.hidden, cfg.layers, cfg.tcn_kernel, cfg.act)
        elif cfg.rnn == "attn":
            self.rnn = CausalAttention(
                rnn_in, cfg.hidden, cfg.layers, cfg.attn_window, cfg.attn_heads, cfg.act
            )
        else:
            self.rnn = RECURRENT[cfg.rnn](
                rnn_in,
                cfg.hidden,
                num_layers=cfg.layers,
                batch_first=True,
                dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            )
        self.drop = nn.Dropout(cfg.dropout)
        self.aux_head = nn.Linear(cfg.feat_dim, cfg.aux_outputs) if cfg.aux_outputs else None
        recon_in = cfg.hidden if cfg.recon_memory else cfg.feat_dim
        self.recon_head = nn.Linear(recon_in, cfg.recon_outputs) if cfg.recon_outputs else None
        head_in = cfg.hidden + (cfg.feat_dim if cfg.skip else 0)
        self.head = nn.Sequential(
            nn.Linear(head_in, cfg.head_hidden),
            activation(cfg.act),
            nn.Linear(cfg.head_hidden, cfg.n_outputs),
        )

    # --- state -----------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        c = self.config
        if c.rnn in WINDOWED:  # the core's last inputs, not a hidden vector
            r = self.rnn.receptive_field - 1
            state = {"past": torch.zeros(batch, r, self.rnn_in, device=device)}
            if c.rnn == "attn":  # which of them the stream has seen (1) or not yet (0)
                state["seen"] = torch.zeros(batch, r, device=device)
        else:
            z = torch.zeros(batch, c.layers, c.hidden, device=device)
            state = {"h": z}
            if c.rnn == "lstm":
                state["c"] = z.clone()
        if self.window > 1:
            state["frames"] = torch.zeros(
                batch, 3, self.window - 1, c.height, c.width, device=device
            )
            state["started"] = torch.zeros(batch, device=device)
        if c.autoregressive:
            state["prev"] = torch.zeros(batch, c.n_outputs, device=device)
        if c.hold_on_missing:
            state["last"] = torch.zeros(batch, self._n_held(), device=device)
        return state

    def _n_held(self) -> int:
        return self.config.held_outputs or self.config.n_outputs

    # --- encoder: once per frame -----------------------------------------------------
    def encode(self, frames: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        b, t = frames.shape[:2]
        x = to_float(frames.flatten(0, 1))  # (B*T, 3, H, W)
        state = dict(state)
        if self.window > 1:
            x = x.view(b, t, *x.shape[1:]).transpose(1, 2)  # (B, 3, T, H, W)
            # A fresh stream has no past: repeat its first frame instead of using zeros.
            started = state["started"].view(b, 1, 1, 1, 1) > 0
            first = x[:, :, :1].expand(-1, -1, self.window - 1, -1, -1)
            past = torch.where(started, state["frames"], first)
            vol = torch.cat([past, x], dim=2)  # (B, 3, w-1+T, H, W)
            state["frames"] = vol[:, :, -(self.window - 1) :]
            state["started"] = torch.ones_like(state["started"])
            if self.config.front3d > 1:
                # Outside any bfloat16 autocast (train.precision): the CPU Conv3d backward
                # in bfloat16 of torch 2.13 gave non-finite gradients and corrupted memory.
                with torch.autocast(x.device.type, enabled=False):
                    x = self.front(vol.float()).transpose(1, 2).flatten(0, 1)  # (B*T, C3, H, W)
            else:
                x = self._stacked(vol, t)
        feats = self.project(self.encoder(x))  # (B*T, F)
        return feats.view(b, t, -1), state

    def _stacked(self, vol: torch.Tensor, t: int) -> torch.Tensor:
        """(B, 3, w-1+T, H, W) -> (B*T, 3w, H, W): frame t, then x[t]-x[t-1], x[t-1]-x[t-2], …"""
        n = self.window
        win = [vol[:, :, j : j + t] for j in range(n - 1, -1, -1)]  # newest first, (B,3,T,H,W)
        chans = [win[0]] + [win[j] - win[j + 1] for j in range(n - 1)]
        x = torch.stack(chans, dim=1)  # (B, n, 3, T, H, W)
        b, _, _, _, h, w = x.shape
        return x.permute(0, 3, 1, 2, 4, 5).reshape(b * t, 3 * n, h, w)

    def cached_encoder(self) -> tuple[str, dict] | None:
        # A frame window (3D conv, stacked differences) mixes frames before the encoder,
        # so a store of per-frame encoder outputs cannot stand in for it.
        if self.window > 1:
            return None
        return self.config.encoder, dataclasses.asdict(self.encoder.cfg)

    def encode_features(self, raw: torch.Tensor) -> torch.Tensor:
        """Precomputed encoder outputs (B, T, E) -> projected features (B, T, F).

        Training over a features store uses this instead of `encode`: the frozen CNN never
        runs again."""
        return self.project(raw.float())

    # --- recurrent core --------------------------------------------------------------
    def _rnn(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.config.rnn == "tcn":
            out, past = self.rnn(x, state["past"])
            return out, {**state, "past": past}
        if self.config.rnn == "attn":
            out, past, seen = self.rnn(x, state["past"], state["seen"])
            return out, {**state, "past": past, "seen": seen}
        if x.shape[1] == 1 and not torch.is_grad_enabled() and not _exporting():
            return self._cell_step(x, state)
        h = state["h"].transpose(0, 1).contiguous()  # (L, B, H)
        rnn = self._recurrent()
        if self.config.rnn == "lstm":
            out, (h, c) = rnn(x, (h, state["c"].transpose(0, 1).contiguous()))
            return out, {**state, "h": h.transpose(0, 1), "c": c.transpose(0, 1)}
        out, h = rnn(x, h)
        return out, {**state, "h": h.transpose(0, 1)}

    def _recurrent(self):
        """The recurrent layer to call: itself, or while training with `weight_drop` the
        same layer with dropped hidden-to-hidden weights (one mask per call: a whole chunk)."""
        p = self.config.weight_drop
        if not (self.training and p > 0):
            return self.rnn
        dropped = {
            f"weight_hh_l{i}": nn.functional.dropout(getattr(self.rnn, f"weight_hh_l{i}"), p)
            for i in range(self.config.layers)
        }
        return lambda *args: torch.func.functional_call(self.rnn, dropped, args)

    def _cell_step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        # One inference step through the cell functions: nn.LSTM's per-call overhead is
        # ~4x the arithmetic at batch 1, and this is the path a car runs every frame.
        inp = x[:, 0]  # (B, F)
        hs, cs = [], []
        for layer in range(self.config.layers):
            w = [getattr(self.rnn, f"{n}_l{layer}") for n in _WEIGHTS]
            h = state["h"][:, layer]
            if self.config.rnn == "lstm":
                h, c = torch.lstm_cell(inp, (h, state["c"][:, layer]), *w)
                cs.append(c)
            else:
                h = _CELL[self.config.rnn](inp, h, *w)
            hs.append(h)
            inp = h  # inter-layer dropout is off outside training
        new = {**state, "h": torch.stack(hs, 1)}
        if cs:
            new["c"] = torch.stack(cs, 1)
        return inp[:, None], new

    def _head(self, out: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        # (B, T, H) memory [+ (B, T, F) this frame's features] -> (B, T, K)
        x = torch.cat([out, feats], dim=-1) if self.config.skip else out
        return self.head(self.drop(x))

    def _blank(self, feats: torch.Tensor, missing: torch.Tensor | None) -> torch.Tensor:
        """(B, T, F) -> (B, T, F+1): a missing frame's features zeroed, the flag appended
        (the head's skip path sees the zeroed features too: nothing from a bad image)."""
        if missing is None:
            m = feats.new_zeros(*feats.shape[:2], 1)
        else:
            m = missing.to(feats.dtype).view(*feats.shape[:2], 1)
        return torch.cat([feats * (1 - m), m], dim=-1)

    def _head_in(self, x: torch.Tensor) -> torch.Tensor:
        # the skip path sees the (masked) features, not the flag
        return x[..., : self.config.feat_dim] if self.missing_input else x

    def core(
        self,
        feats: torch.Tensor,
        state: State,
        teacher: torch.Tensor | None = None,
        missing: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        if not self.autoregressive:
            y, state, _ = self.core_with_memory(feats, state, missing)
            return y, state
        if self.missing_input:
            feats = self._blank(feats, missing)
        if teacher is not None:
            # Teacher forcing: step t sees the true outputs of step t-1 (the carried
            # prediction for the chunk's first step), so the whole chunk runs at once.
            prev = torch.cat([state["prev"].unsqueeze(1), teacher[:, :-1]], dim=1)
            out, state = self._rnn(torch.cat([feats, prev], dim=-1), state)
            y = self._head(out, self._head_in(feats))
            return y, {**state, "prev": teacher[:, -1]}
        ys = []
        for t in range(feats.shape[1]):
            x = torch.cat([feats[:, t : t + 1], state["prev"].unsqueeze(1)], dim=-1)
            out, state = self._rnn(x, state)
            y = self._head(out, self._head_in(feats[:, t : t + 1]))  # (B, 1, K)
            state = {**state, "prev": y[:, 0]}
            ys.append(y)
        return torch.cat(ys, dim=1), state

    def core_with_memory(
        self, feats: torch.Tensor, state: State, missing: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """`core` of a model that does not feed its outputs back, also returning the
        memory's output (B, T, H): what the training-only `train.recon_lead` head reads."""
        if self.missing_input:
            feats = self._blank(feats, missing)
        out, state = self._rnn(feats, state)  # (B, T, H)
        y = self._head(out, self._head_in(feats))  # (B, T, K)
        y, state = self._hold(y, state, missing) if self.hold_on_missing else (y, state)
        return y, state, out

    def _hold(
        self, z: torch.Tensor, state: State, missing: torch.Tensor | None
    ) -> tuple[torch.Tensor, State]:
        """Head outputs z (B, T, K) -> y: y_t = z_t on a present frame, y_{t-1} + z_t on a
        missing one (y_{-1}: `state["last"]`); only the first `held_outputs` columns."""
        n = self._n_held()
        if missing is None:  # every frame present: the outputs are the head's
            return z, {**state, "last": z[:, -1, :n].to(state["last"].dtype)}
        m = missing.bool().view(*z.shape[:2], 1)  # (B, T, 1)
        # The recurrence is in output space only (K numbers a frame): a loop over T is
        # cheap next to the encoder and the LSTM, which still run on the whole chunk.
        prev = state["last"].to(z.dtype)  # (B, n)
        keep = torch.sigmoid(self.decay_logit) if self.config.hold_decay else 1.0  # (n,)
        held = []
        for t in range(z.shape[1]):
            prev = torch.where(m[:, t], keep * prev + z[:, t, :n], z[:, t, :n])
            held.append(prev)
        y = torch.cat([torch.stack(held, dim=1), z[..., n:]], dim=-1)  # (B, T, K)
        return y, {**state, "last": prev.to(state["last"].dtype)}


def _check_hold(cfg: CnnRnnConfig) -> None:
    if not 0 <= cfg.held_outputs <= cfg.n_outputs:
        raise SteertimeError(
            f"held_outputs must be in 0..n_outputs ({cfg.n_outputs}), got {cfg.held_outputs}"
        )
    if cfg.hold_decay and not cfg.hold_on_missing:
        raise SteertimeError("hold_decay decays the held output: set model.hold_on_missing=true")
    if not cfg.hold_on_missing:
        return
    if not cfg.missing_input:
        raise SteertimeError(
            "hold_on_missing holds the last output on frames flagged missing, so it needs "
            "the flag: set model.missing_input=true too (and train with data.faults)"
        )
    if cfg.autoregressive:
        raise SteertimeError(
            "hold_on_missing is not supported for autoregressive models (they already feed "
            "their previous outputs back); use a non-autoregressive cnn_* model"
        )


def _builder(cfg: CnnRnnConfig) -> CnnRnn:
    return CnnRnn(cfg)


register_model("cnn_rnn", CnnRnnConfig)(_builder)
register_model("cnn_lstm", CnnRnnConfig, rnn="lstm")(_builder)
register_model("cnn_gru", CnnRnnConfig, rnn="gru")(_builder)
# Bai et al. (2018): dilated causal convolutions, a 31-frame horizon (1.5 s at 20 Hz).
register_model("cnn_tcn", CnnRnnConfig, rnn="tcn", layers=4)(_builder)
# Attention over the last 31 frames (two blocks of 16): which recent frames to read is
# chosen per frame, where the TCN's window mixes them with fixed weights.
register_model("cnn_attn", CnnRnnConfig, rnn="attn", layers=2)(_builder)
register_model("cnn_lstm_ar", CnnRnnConfig, rnn="lstm", autoregressive=True)(_builder)
# Chauffeur (3rd): a frozen ImageNet CNN's features into an LSTM over long sequences.
_feat = {"encoder": "efficientnet_lite0", "feat_dim": 256, "hidden": 128}
register_model("feat_lstm", CnnRnnConfig, rnn="lstm", **_feat)(_builder)
register_model("feat_gru", CnnRnnConfig, rnn="gru", **_feat)(_builder)
# The same ImageNet encoder fine-tuned end to end (all 16 MBConv blocks; every batch norm
# keeps ImageNet's statistics) over a 3x5 grid of where the line is; train it
# with `train.probe_epochs` so the head is trained before ImageNet's weights move.
_lite = {"grid": [3, 5], "finetune_blocks": 16}  # lists, as a stored config reads back
register_model(
    "lite_lstm",
    CnnRnnConfig,
    rnn="lstm",
    **{**_feat, "feat_dim": 128},
    dropout=0.5,
    encoder_cfg=_lite,
)(_builder)
# Komanda (Udacity Challenge 2, 1st): 3D conv over 5 frames, LSTM, autoregressive outputs.
register_model("komanda", CnnRnnConfig, rnn="lstm", front3d=5, autoregressive=True)(_builder)
# The encoder sees the frame and its recent motion (3 frames, early fusion) before the LSTM.
register_model("motion_lstm", CnnRnnConfig, rnn="lstm", stack=3)(_builder)
