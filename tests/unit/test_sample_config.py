"""contrib/tenantflow.conf.sample is what oslo-config-generator makes from today's options, and
every option of `tenantflow serve` is settable in the INI (serve --help shows only ours)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from oslo_config import generator

from controller import config

ROOT = Path(__file__).parents[2]


def test_sample_is_current(tmp_path):
    out = tmp_path / "sample.conf"
    generator.main(["--config-file", str(ROOT / "contrib/config-generator.conf"), "--output-file", str(out)])
    assert out.read_text() == (ROOT / "contrib/tenantflow.conf.sample").read_text(), \
        "stale sample: run oslo-config-generator --config-file contrib/config-generator.conf"


def test_every_option_is_in_the_sample():
    sample = (ROOT / "contrib/tenantflow.conf.sample").read_text()
    for _group, opts in config.list_opts():
        for opt in opts:
            assert f"#{opt.dest} =" in sample, opt.dest


def test_an_ini_sets_what_the_command_line_does(tmp_path):
    ini = tmp_path / "tenantflow.conf"
    ini.write_text("[DEFAULT]\nstore = memory://\napi_listen = 127.0.0.1:19999\nlog_level = debug\n"
                   "vni_ranges = 100:200\n")
    cfg = config.load(["--config-file", str(ini)])
    assert (cfg.store, cfg.api_port, cfg.log_level) == ("memory://", 19999, "DEBUG")
    assert cfg.settings.vni_range == (100, 200)


def test_serve_help_shows_only_tenantflow_options():
    res = subprocess.run([sys.executable, "-m", "topology.cli.main", "serve", "--help"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "--store" in res.stdout and "--api-listen" in res.stdout
    for foreign in ("zapi", "bgp", "test-switch", "ofp-switch-address-list"):
        assert foreign not in res.stdout, foreign
