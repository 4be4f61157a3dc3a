"""Operating conditions of the synthetic vibration generator: shaft speed (constant or a
ramp) and load, the default output pinned to values from before they existed, and the
demo set's conditions."""

from __future__ import annotations

import numpy as np
import pytest

from sensor_data.synthetic_vib import _DEMO, _mesh_hz, make_vibration, shaft_speed_hz

FS = 2000.0

# Values of make_vibration from before load / shaft_hz_end existed (issue 11, item 7):
# rows 0, 1, n//2, n-1 (6 decimals) and the per-axis sum of squares (4 decimals).  Values,
# not a hash, so a libm that rounds the last float32 bit differently cannot fail the test.
_BEFORE = [
    ((2.0, 2000.0, 7, 29.5, None, 1.0),
     [[0.046801, 0.396236, 0.010265], [0.149773, 0.257838, 0.149411],
      [0.625644, -0.615128, -0.167515], [0.032471, 0.742743, 0.240458]],
     [1145.2349, 837.4904, 271.6247]),
    ((1.0, 2000.0, 0, 29.5, "bearing", 1.0),
     [[0.002906, -0.069001, 0.005869], [0.167541, -0.421415, -0.075807],
      [-0.686706, -0.009083, -0.340033], [0.10108, 0.498898, -0.051712]],
     [1344.8201, 794.0848, 207.9817]),
    ((1.0, 2000.0, 1, 29.5, "imbalance", 1.0),
     [[0.501788, 0.656541, 0.286194], [0.557567, 0.88511, 0.220701],
      [-2.099817, 0.130519, -0.040747], [0.017401, -1.007397, 0.202281]],
     [3430.1479, 655.1342, 143.7797]),
    ((1.0, 2000.0, 2, 29.5, "looseness", 1.0),
     [[-0.396196, -0.548126, 0.281795], [-0.781857, -0.589038, -0.079883],
      [0.361186, 0.71053, -0.018894], [0.384313, -0.040215, -0.043229]],
     [1030.7808, 848.7403, 522.7695]),
    ((1.5, 1000.0, 3, 33.0, "bearing", 0.5),
     [[0.881021, 0.193159, -0.086686], [0.896269, 0.039971, -0.305184],
      [-0.02512, 0.608433, 0.041649], [-0.26916, -0.701803, 0.040564]],
     [769.4789, 478.6422, 132.3498]),
    ((1.0, 64.0, 4, 29.5, None, 1.0),  # a low-rate (aliased) test signal stays allowed
     [[0.062242, 0.077936, -0.159268], [0.333925, -0.734303, -0.195527],
      [-0.854822, 0.805848, 0.109607], [0.240901, -0.153998, -0.249206]],
     [12.041, 15.7261, 2.6971]),
]


def _spectrum(values: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and Hann-windowed magnitude spectrum of each axis (mean removed)."""
    x = values.astype(np.float64)
    x = (x - x.mean(axis=0)) * np.hanning(len(x))[:, None]
    return np.fft.rfftfreq(len(x), 1 / fs), np.abs(np.fft.rfft(x, axis=0))


def _peak_hz(values: np.ndarray, fs: float, lo: float, hi: float, axis: int = 0) -> float:
    freqs, mag = _spectrum(values, fs)
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][np.argmax(mag[band, axis])])


def _line(values: np.ndarray, fs: float, hz: float, axis: int = 0) -> float:
    """Spectral magnitude at ``hz`` (largest bin within +-1 Hz)."""
    freqs, mag = _spectrum(values, fs)
    return float(mag[np.abs(freqs - hz) <= 1.0, axis].max())


@pytest.mark.parametrize(("args", "rows", "energy"), _BEFORE)
def test_default_conditions_reproduce_the_values_from_before(args, rows, energy):
    out = make_vibration(*args)
    n = len(out)
    np.testing.assert_allclose(out[[0, 1, n // 2, n - 1]], rows, atol=2e-6)
    np.testing.assert_allclose((out.astype(np.float64) ** 2).sum(axis=0), energy,
                               rtol=1e-6, atol=1e-4)
    # Spelling the defaults out changes nothing, bit for bit.
    np.testing.assert_array_equal(out, make_vibration(*args, load=1.0, shaft_hz_end=None))


def test_same_seed_same_array_under_every_condition():
    kw = {"shaft_hz": 27.0, "shaft_hz_end": 32.0, "load": 0.7, "fault": "bearing"}
    a = make_vibration(2.0, FS, 11, **kw)
    assert a.shape == (4000, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, make_vibration(2.0, FS, 11, **kw))
    assert not np.array_equal(a, make_vibration(2.0, FS, 12, **kw))
    assert not np.array_equal(a, make_vibration(2.0, FS, 11, **{**kw, "load": 0.8}))
    assert not np.array_equal(a, make_vibration(2.0, FS, 11, **{**kw, "shaft_hz_end": 31.0}))


@pytest.mark.parametrize("speed", [26.0, 31.2, 40.0])
def test_1x_peak_sits_at_the_requested_constant_speed(speed):
    duration = 8.0
    values = make_vibration(duration, FS, 3, shaft_hz=speed, load=0.8)
    peak = _peak_hz(values, FS, 0.6 * speed, 1.4 * speed)
    assert abs(peak - speed) <= 1.0 / duration  # within one FFT bin (0.125 Hz)


def test_1x_peak_follows_a_speed_ramp():
    duration, start, end = 8.0, 26.0, 33.0
    values = make_vibration(duration, FS, 5, shaft_hz=start, shaft_hz_end=end)
    nominal = shaft_speed_hz(duration, FS, start, end)
    assert nominal[0] == start and nominal[-1] == end
    seg = int(2.0 * FS)  # 2 s segments: 0.5 Hz bins
    first = _peak_hz(values[:seg], FS, 20.0, 40.0)
    last = _peak_hz(values[-seg:], FS, 20.0, 40.0)
    assert abs(first - nominal[:seg].mean()) <= 0.5  # ~26.9 Hz
    assert abs(last - nominal[-seg:].mean()) <= 0.5  # ~32.1 Hz
    assert last - first > 4.0
    # A constant speed does not move between the same segments.
    steady = make_vibration(duration, FS, 5, shaft_hz=start)
    assert _peak_hz(steady[:seg], FS, 20.0, 40.0) == _peak_hz(steady[-seg:], FS, 20.0, 40.0)
    # The whole-file spectrum of the ramp is smeared: its 1x line is far below a steady one.
    assert _line(values, FS, 29.5) < 0.5 * _line(steady, FS, start)


def test_load_scales_mesh_most_and_1x_a_little():
    speed = 29.5
    mesh_hz = _mesh_hz(speed, FS)  # 16 teeth at fs 2000: 472 Hz, under fs / 4
    by_load = {load: make_vibration(4.0, FS, 9, shaft_hz=speed, load=load)
               for load in (0.5, 1.0, 1.3)}
    one_x = {load: _line(v, FS, speed) for load, v in by_load.items()}
    two_x = {load: _line(v, FS, 2 * speed) for load, v in by_load.items()}
    mesh = {load: _mesh_amplitude(v, mesh_hz) for load, v in by_load.items()}
    # More load: more of each, monotonically.
    for lines in (one_x, two_x, mesh):
        assert lines[0.5] < lines[1.0] < lines[1.3]
    # By the documented factors (same seed, same phases): 1x 1 + 0.15 (load - 1),
    # 2x 1 + 0.3 (load - 1), mesh 1 + 0.8 (load - 1).
    assert one_x[1.0] / one_x[0.5] == pytest.approx(1 / 0.925, rel=0.02)
    assert two_x[1.0] / two_x[0.5] == pytest.approx(1 / 0.85, rel=0.02)
    assert mesh[1.0] / mesh[0.5] == pytest.approx(1 / 0.6, rel=0.05)
    # Broadband noise (between the lines, 700-900 Hz) rises only slightly: 1 + 0.1 (load - 1).
    freqs, light = _spectrum(by_load[0.5], FS)
    heavy = _spectrum(by_load[1.0], FS)[1]
    band = (freqs > 700) & (freqs < 900)
    noise_ratio = np.sqrt((heavy[band, 0] ** 2).sum() / (light[band, 0] ** 2).sum())
    assert noise_ratio == pytest.approx(1 / 0.95, rel=0.01)


def _mesh_amplitude(values: np.ndarray, mesh_hz: float) -> float:
    """The mesh tone's amplitude on x: its band energy (the speed wobble spreads it over a
    few Hz) less the broadband noise expected in that band."""
    freqs, mag = _spectrum(values, FS)
    power = mag[:, 0] ** 2
    near = np.abs(freqs - mesh_hz) <= 10.0  # the shaft-rate sidebands are 29.5 Hz away
    floor = power[(freqs > 700) & (freqs < 900)].mean()
    return float(np.sqrt(power[near].sum() - floor * near.sum()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"load": -0.1}, r"load=-0.1 must be between 0 and 1.5"),
        ({"load": 2.0}, r"load=2.0 must be between 0 and 1.5"),
        ({"load": float("nan")}, r"load=nan must be between 0 and 1.5"),
        ({"shaft_hz": 1000.0}, r"shaft_hz=1000.0 Hz must be a positive shaft speed below "
                               r"Nyquist \(fs/2 = 1000 Hz"),
        ({"shaft_hz": -5.0}, r"shaft_hz=-5.0 Hz must be a positive shaft speed"),
        ({"shaft_hz_end": 1200.0}, r"shaft_hz_end=1200.0 Hz must be .* below Nyquist"),
        ({"duration_sec": 0.0}, r"duration_sec=0.0 at fs=2000 gives no sample"),
        ({"fs": 0.0}, r"fs=0.0 must be a positive sampling rate"),
    ],
)
def test_invalid_conditions_raise_a_clear_value_error(kwargs, message):
    args = {"duration_sec": 1.0, "fs": FS, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_vibration(**args)


def test_demo_conditions_cover_an_unseen_speed_a_ramp_and_every_fault():
    train = [d for d in _DEMO if d.split == "train"]
    speeds = sorted(d.shaft_hz for d in train)
    lo, hi = speeds[0], speeds[-1]
    assert len(train) == 3 and len({d.load for d in train}) == 3  # speeds and loads spread
    for d in _DEMO:
        ends = [d.shaft_hz] + ([d.shaft_hz_end] if d.shaft_hz_end is not None else [])
        assert all(lo <= s <= hi for s in ends), d.stem  # everything inside the trained range
    calib = [d for d in _DEMO if d.split == "calib"]
    assert calib and not {d.shaft_hz for d in calib} & set(speeds)
    normals = {d.stem: d for d in _DEMO if d.split == "test" and d.fault is None}
    unseen = normals["test_normal_000"]
    assert unseen.shaft_hz_end is None and unseen.shaft_hz not in speeds
    assert unseen.speed_label == "31.2"
    ramp = normals["test_normal_001"]
    assert ramp.shaft_hz_end is not None and ramp.speed_label == "27.0-32.0"
    assert {d.fault for d in _DEMO if d.fault} == {"bearing", "imbalance", "looseness"}
