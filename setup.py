"""Distribution `tenantflow`: OpenFlow SDN controller giving OVS Neutron-style networking."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="tenantflow",
    version="0.1.0",
    description="OpenFlow 1.3 controller (os-ken) providing Neutron-compatible networking on Open vSwitch",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    python_requires=">=3.11",
    packages=find_packages(include=["flows", "flows.*", "apps", "apps.*", "controller", "controller.*",
                                    "topology", "topology.*"]),
    # The dashboard's static files (topology/api/dashboard/static), served at /dashboard/.
    package_data={"topology.api.dashboard": ["static/*.*", "static/js/*.js"]},
    install_requires=[line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
                      if line.strip() and not line.startswith("#")],
    entry_points={"console_scripts": ["tenantflow = topology.cli.main:main"],
                  # `oslo-config-generator --namespace tenantflow` writes contrib/tenantflow.conf.sample
                  "oslo.config.opts": ["tenantflow = controller.config:list_opts"]},
)
