"""The whole paper on simulated BatVision, in minutes on a CPU (README's first command).

  python -m avs_jax.main --config=configs/quickstart.py --workdir=runs/quickstart

Simulates a BV2-like and a BV1-like dataset, builds the three TFDS datasets, trains AVS-Net
(RGB-Echoes), its Only-RGB baseline and a relative DepthNet/PoseNet (tiny sizes), evaluates
(Tables 1 and 2, figures) and checks the paper's claims on held-out simulated rooms. A second
run reuses what is done; an interrupted run continues where it stopped.
"""

import ml_collections
import numpy as np

from avs_jax.config_files import load_config as _load
from tfds_batvision.sim import scene as scene_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    del arg
    c = ml_collections.ConfigDict()
    c.mode = "quickstart"
    c.seed = 0
    c.sim = ml_collections.ConfigDict()
    c.sim.workers = 2
    # BV2-like: rooms of 3-30 m; with global_scale the picture of a small and a large room is
    # the same, so only the echo knows the scale (the paper's point, DESIGN.md).
    # 160 rooms (96 train) rather than 80: stage 1 sees twice the rooms in the same 6 epochs.
    # Measured on 24 extra held-out BV1-like rooms with the relative models of seeds 0-2: the
    # median of its M_p scaled them at least as well as mean-std in 4 of 6 lines (Abs Rel and
    # delta1; 80 rooms: 0 of 6); the two left are seed 2's, whose relative depth is no better
    # than a constant there (0.428 vs 0.417). BV2 test Abs Rel (RGB-Echoes) 0.48/0.56/0.40 ->
    # 0.38/0.30/0.38 (on its 32 test rooms instead of 16).
    c.sim.bv2 = ml_collections.ConfigDict(dict(
        scenes=160, frames_per_scene=4, height=64, width=128, min_room=3.0, max_room=30.0,
        global_scale=True, supersample=1))
    # BV1-like: offices up to 12 m, moving sequences for the triples (t-20, t, t+20). 26 rooms
    # of 100 frames split 10 / 2 / 14 (train / val / test): the relative model trains on 600
    # triples of 10 rooms, and BV1 test holds 14 rooms (1400 images). With 3 test rooms (the
    # 0.6/0.2/0.2 split of 16) every BV1 line rested on three room-level scale errors: on 24
    # held-out rooms the same checkpoints gave other verdicts (seed 0: relative depth vs a
    # constant 0.245 vs 0.310 on its 3 rooms, 0.412 vs 0.417 on the 24).
    c.sim.bv1 = ml_collections.ConfigDict(dict(
        scenes=26, frames_per_scene=100, height=64, width=128, min_room=3.0, max_room=12.0,
        global_scale=True, supersample=1, split_fractions=(10, 2, 14),
        # The rig's motion per frame, the simulator's defaults (0.4 m and <= 10 deg per triple
        # gap before the room's scale); see the pose-net measurements below.
        step_m=scene_lib.STEP_M, max_turn_deg=float(np.degrees(scene_lib.MAX_TURN_RAD))))

    c.stage1 = _load("avsnet", "tiny")
    c.stage1.train.num_epochs = 6
    # 384 training and 128 validation samples, ~200 kB each decoded: decode (JPEG, STFT, resizes;
    # ~8 of the pipeline's ~11 CPU ms per sample) once, not in each of the 6 epochs.
    c.stage1.data.cache_decoded = True
    # log(STFT magnitude) into the echo encoder (the paper feeds the raw magnitude). The raw
    # magnitude spans ~3 decades, direct path to late echoes; the tiny encoder trained for a few
    # hundred steps then reads little more than the direct path: measured on held-out rooms, the
    # echo model's per-image median depth correlated with the truth at 0.67 (BV2) and -0.64 (BV1,
    # zero-shot) with raw magnitudes, 0.80 and 0.78 with the log. The log also shows a gap
    # that the raw magnitude hides: a BV1 recording (72.5 ms) is zero-padded to BV2's 30 m
    # window, so 59% of its STFT columns read log(floor) = -6.9 where BV2's noise floor reads
    # -5.3. A floor of 1e-2 (-4.6 vs -4.2) did not help: BV1 Abs Rel 0.430 against 0.312
    # (seed 0, one run, with the earlier 80 BV2 rooms).
    c.stage1.model.echo.log_magnitude = True
    c.relative = _load("monodepth2", "tiny")
    c.relative.data.image_size = (64, 128)
    # 4 epochs of the 600 triples (600 steps): on seed 0 (range 0.001-1), 6 epochs made the held-out
    # depth worse (GT-median oracle Abs Rel 0.224 -> 0.335): it starts to fit the 10 rooms.
    c.relative.train.num_epochs = 4
    # A tiny DepthNet/PoseNet from scratch: Monodepth2's lr 1e-4 is for its pretrained ResNet.
    c.relative.train.learning_rate = 1e-3
    # Relative depth range of disp_to_depth, 0.01-10 instead of Monodepth2's 0.1-100 (same 1000:1
    # span; the scale is free, median scaling removes it). PoseNet starts with translations of
    # ~0.005 (its x0.01 output scale) while the simulated rig moves ~0.2x the scene depth between
    # triple frames; with 0.1-100 the depth needed to match that parallax (~0.03) lies below
    # the floor, so the measured run drove every pixel to the 0.1 floor (flat depth, GT-median
    # oracle abs_rel 0.35). With 0.01-10 it stays inside the range and keeps its structure
    # (oracle 0.27).
    # The floor can still catch a run: with this range a wider DepthNet and a 40-room BV1
    # ended with every pixel at 0.01 (per-image log-depth spread 0.00 and 0.02, truth 0.34).
    # 0.001-1 avoided that but, over seeds 0-2, held 11 of the 18 claim lines against 12 here.
    c.relative.loss.min_depth = 0.01
    c.relative.loss.max_depth = 10.0
    # What limits Table 2 now is this model, not the scale sources. On the three seeds of this
    # setting its depth is nearly flat: per-image log-depth std 0.08 / 0.03 / 0.04 against the
    # truth's 0.40, values 0.016-0.022 (the sigmoid barely left its initial 0.5, which
    # disp_to_depth puts at 2x the floor whatever the range). Measured and not adopted:
    # - 2x2 supersampled RGB in both simulators and smoothness 3e-4 (1e-3 scaled by the 64x128
    #   vs 192x640 pixel pitch): seed 0 gained structure (oracle 0.290 vs constant 0.386), seed 1
    #   went to the floor (every pixel 0.0100), seed 2 stayed weak (0.416 vs 0.425); 14 of 18
    #   claim lines against 16 here, 8.8-9.1 min.
    # - The disparity started near depth 0.3 (sigmoid bias -3.4, 30x above the floor) with PoseNet
    #   x0.1: seed 1 stayed off the floor but without structure (oracle 0.339 vs 0.340).
    # Where R had structure but a compressed spread (5-95% log range 0.68 and 0.47 in two of
    # these runs, against the truth's ~1.3), mean-std, which stretches R to M_p's spread, beat
    # median on delta1 (Only-RGB scale in one, both scales in the other): eq. 3's median
    # presumes R proportional to depth, as a relative model with the paper's pretrained encoder
    # is meant to be and this tiny one from scratch is not.
    # (The measurements above used rig paths that turned up to 21 deg between triple frames,
    # before the simulator bounded the heading change itself; with that bound the relative depth
    # beats a constant by more on all three seeds: 0.325 vs 0.388, 0.298 vs 0.311, 0.415 vs
    # 0.439, and the claim lines are 4, 6 and 4 of 6, README Results.)
    # Under the flat depth: the pose net learns almost no motion (validation now reports
    # pose_rotation_error_deg and pose_translation_angle_deg against the simulator's poses).
    # Seed 1, 40 training triples: 0.11 deg of rotation predicted where the rig turned 7.2, the
    # translation direction 61 deg off; photometric loss 0.078 at the network's solution, 0.021
    # with the true depth and poses, 0.047 with a constant depth and the true poses. Why: in
    # depth units near 0.02 (this range's start) a step of the raw translation output moves
    # pixels ~50x as far as the same step of the raw rotation (translation acts through 1/depth),
    # so Adam's even steps fit the translation and leave the rotation behind. Measured, not
    # adopted (relative stage only, ~4 min each, before the heading bound): a pose net twice as
    # wide, 12 epochs (rotation 0.36 vs 2.3 deg), a path turning <= 5 deg per triple (seeds 0
    # and 2: 3 of 6 lines each), a straight path (depth unconstrained near the focus of
    # expansion: 2 of 6), a floor of 1 (range 1-1000 on the <= 5 deg path: rotation 1.9 vs 2.3
    # deg, translation 42 deg off; 1-100: rotation 4.3 vs 7.4 deg; both times the depth sat at
    # the floor). With the fixed paths, the pose net's translation output scaled by a further
    # 0.02 (so both outputs move pixels alike; a throwaway change) made it learn part of the
    # motion (rotation 2.7-3.4 vs 5.7-7.2 deg, translation 45 deg off on seeds 1 and 2) but
    # the depth went to the floor on seeds 0 and 2 and lost to a constant on all three. The
    # paper's models start from a pretrained encoder, which the quickstart has no file for.
    # Two ways to take the free scale out of the loss (so the depth has no floor to fall to and
    # starts near 1, where both pose outputs move pixels alike), measured on seeds 0-2 and not
    # adopted: the warp's disparity divided by its per-image mean (Wang et al. 2018; sigmoid
    # kept): the pose net learnt some motion (rotation 1.8-3.9 vs 5.7-7.2 deg) but the sigmoid
    # drifted to a bound on seed 1 (every pixel 0, flat depth) and seed 0's depth overshot
    # (log spread 0.75-1.08 vs the truth's 0.5): the depth was no better than a constant on any
    # (0.850, 0.311, 0.724 vs 0.388, 0.311, 0.439). A log-disparity head without the sigmoid,
    # exp(x - mean x): rotation 1.8-3.6 deg, depth again worse than a constant on all three
    # (1.029, 0.336, 0.487), training photometric loss 0.093-0.102 against 0.078; with the net's
    # poses even the true depth scores 0.074-0.081, so the pose, not the depth head, is the limit.
    # Why the pose net is stuck, measured by optimising each triple's pose directly (no network;
    # 16 training triples, Adam, 600 steps, from zero motion): even with the true depth the
    # photometric loss does not lead to the true motion at this rig speed (rotation 4.1 deg off
    # of 4.9, translation 53 deg off); from half the true motion it does (1.2 deg, 6 deg). With a
    # flat depth it prefers a wrong pose, a sideways translation standing in for the turn
    # (loss 0.025 against 0.031 at the true pose). A rig at half the speed (sim.bv1.step_m 0.01,
    # max_turn_deg 0.25) brings the true depth's direct fit to 1.3 deg of 2.5, but the pose net
    # still learnt 0.17-0.32 deg of 2.9-3.7 (training loss 0.052-0.062, above the 0.025 that
    # per-triple poses reach on a flat depth: the pose regression itself is what 600 steps from
    # scratch do not train). Claim lines 5, 6, 4 of 6 (15 of 18 against 14 here), depth against
    # a constant 0.360/0.376, 0.283/0.284, 0.418/0.450: within the seeds' spread, not adopted;
    # with smoothness 2e-4 as well (1e-3 scaled to 64x128): 6, 3, 5 of 6 (14 of 18). The slow
    # rig with 12 epochs (1800 steps, past the 10-minute target), seeds 0, 1, 2: 5, 3, 5 of 6
    # (13 of 18); depth against a constant 0.338/0.376, 0.373/0.284 (seed 1 now loses to it
    # with the truth's full log-depth spread, 0.44: wrong structure, fitted to the 10 rooms),
    # 0.391/0.450; rotation still 0.4-0.6 deg of ~3: a longer stage buys depth contrast, not
    # pose, and not reliably structure.
    # What does make the pose net learn: a larger factor on its rotation output alone
    # (relative.model.pose_rotation_scale, Monodepth2's 0.01 here). At 0.3 a unit of the raw
    # rotation output moves pixels 0.3 fx = 19 px, about what a unit of the raw translation does
    # at the depth scale the DepthNet settles to (0.01 fx / ~0.025 = 26 px), so the shared pose
    # features are no longer shaped by the translation alone. Seeds 0-2 (relative stage only):
    # rotation 1.8, 6.1, 4.8 deg of 5.7, 7.2, 6.6 (0.1-0.6 at 0.01), translation direction cos
    # 0.18, 0.86, 0.93; but the depth did not follow: seed 0 overshot (per-image log-depth spread
    # 0.70 vs the truth's 0.51) and lost to a constant (0.444 vs 0.388), seed 1 went to the floor,
    # seed 2 0.399 vs 0.439; claim lines 3, 4, 5 of 6 (12 of 18): not adopted. With it, a
    # non-periodic 1/f texture in the simulator (12 sinusoids, periods 0.15-3 m, instead of the
    # checker of 0.4-1.2 m with waves from 8 cm, whose photometric loss has a minimum at every
    # shift by a period): the direct pose fit with the true depth from zero motion ends 1.75 deg
    # off of 4.9 instead of 3.7, the pose net learnt 3.4, 6.7, 4.9 deg of 5.7, 7.2, 6.6, and the
    # depth beat a constant by the widest margins measured on seeds 0 and 2 (0.300 vs 0.388,
    # 0.387 vs 0.439) yet stayed flat on seed 1 (0.366 vs 0.310); a scale-free texture also takes
    # a monocular cue from stage 1 (BV1 zero-shot Abs Rel, RGB-Echoes, 0.297, 0.654, 0.407
    # against 0.270, 0.294, 0.290): 4, 2, 4 of 6 (10 of 18). Half checker-and-waves, half 1/f
    # field: 3, 5, 5 (13 of 18; seed 0's pose net then learnt 0.8 deg). The 1/f texture in BV1
    # alone (stage 1 on the checker BV2, pose factor 0.01): 5, 3, 5 (13 of 18; the zero-shot
    # BV1 step from checker to 1/f rooms cost seed 1's RGB-Echoes 0.491 vs 0.294). None adopted.
    # Why median loses to mean-std on seeds 0 and 2 here, measured with the ground truth itself
    # as the scale source (each image's GT median vs GT mean and spread): mean-std's delta1 is
    # already the higher on those seeds (0.474 vs 0.470, 0.361 vs 0.354; seed 1: 0.409 vs
    # 0.533), because R is compressed (per-image log-depth spread 0.14, 0.04, 0.09 on BV1 test
    # against the truth's 0.41, 0.38, 0.47). But an R with the truth's spread loses the same
    # way: the tiny DepthNet trained on BV2 train depth with a scale-invariant loss (zero-shot on
    # BV1 test: GT-median 0.227 vs constant 0.388, log spread 0.399 vs 0.406) gave, with seed 0's
    # echo scale, mean-std 0.290 / 0.410 against median 0.318 / 0.343 (GT as source: 0.186 vs
    # 0.227). On these outlier-free maps the mean is the better statistic (README Results).
    # Starting the relative stage from that net lost its structure (GT-median 0.338 at lr 1e-3,
    # 0.361 at 1e-4, against 0.319 from scratch): not adopted.
    # Outliers of the kind the paper names (Sec. 3.2.2) in both simulators, as windows onto the
    # outdoors (sim.*.window_prob 0.25: about half the BV1 frames see one, ~8% of the image, at
    # 4-15 m beyond the wall before the room's scale; the echo hears the glass as wall), seeds
    # 0-2 on the slower 2-core machine (2026-11-27, code of 7bf86a9 + windows): 3, 5, 4 of 6
    # (12 of 18, against 14 without). Median >= mean-std then held in 4 of 6 lines (3 of 6
    # without; seed 0's echo line lost delta1 by 0.004 while median won Abs Rel, Sq Rel, RMSE,
    # RMSE log, delta2 and delta3), but the echo scale lost Abs Rel to the RGB scale on seeds 0
    # and 1 (0.466 vs 0.430, 0.412 vs 0.391; delta1 still won), seed 0's relative depth lost to
    # a constant (0.432 vs 0.394) and seed 2's Table 1 BV1 delta1 went to Only-RGB (0.388 vs
    # 0.397). Not adopted; the knob stays in the simulator (--window_prob). The echo scale was
    # still the better one per image (seed 0, BV1 test, |log(scale / GT-median scale)| averaged:
    # 0.17 in frames with a window in view, 0.19 without, against the RGB scale's 0.46 and 0.35,
    # which sat low by 0.46 and 0.27 in log): Abs Rel, at most 1 for an under-estimate, favoured
    # the low RGB scale on the nearly flat relative depth.
    c.evaluate = _load("evaluate", "")
    c.evaluate.figures.num_per_dataset = 3
    # The final relative weights, as Monodepth2 evaluates. In the short run the validation
    # photometric loss is flat and noisy (0.065-0.069 from epoch 3 on) while the depth keeps
    # gaining contrast; measured with the earlier 12-room, 10-epoch setting, "best" picked
    # epoch 6, whose per-image log-depth spread was 0.44 of the truth's (GT-median oracle
    # abs_rel 0.269) against 0.82 (0.233) for the final weights.
    c.evaluate.relative_checkpoint = "latest"
    return c
