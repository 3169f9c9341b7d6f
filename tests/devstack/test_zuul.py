"""The Zuul job of .zuul.yaml: parsed and checked, not run."""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
JOB = "spdk-backend-devstack-tempest-volume"


def _config():
    return yaml.safe_load((ROOT / ".zuul.yaml").read_text())


def _job():
    jobs = [item["job"] for item in _config() if "job" in item]
    assert [j["name"] for j in jobs] == [JOB]
    return jobs[0]


def test_job_is_devstack_tempest_with_the_plugin():
    job = _job()
    assert job["parent"] == "devstack-tempest"
    assert "opendev.org/openstack/tempest" in job["required-projects"]
    vars_ = job["vars"]
    # The plugin's name is the directory devstack clones it into, which
    # settings expects (SPDK_BACKEND_DIR=$DEST/spdk-backend).
    assert list(vars_["devstack_plugins"]) == ["spdk-backend"]
    assert vars_["devstack_plugins"]["spdk-backend"]
    settings = (ROOT / "devstack" / "settings").read_text()
    assert "SPDK_BACKEND_DIR=${SPDK_BACKEND_DIR:-$DEST/spdk-backend}" in settings
    backends = vars_["devstack_localrc"]["CINDER_ENABLED_BACKENDS"].split(",")
    assert [b for b in backends if b.startswith("spdk_vhost:")]


def test_job_runs_the_volume_tests():
    vars_ = _job()["vars"]
    # tempest_test_regex applies only with the 'all' tox environment.
    assert vars_["tox_envlist"] == "all"
    include = re.compile(vars_["tempest_test_regex"])
    exclude = re.compile(vars_["tempest_exclude_regex"])

    def runs(test_id):
        return bool(include.search(test_id)) and not exclude.search(test_id)

    assert runs("tempest.api.volume.test_volumes_get.VolumesGetTest."
                "test_volume_create_get_update_delete")
    assert runs("tempest.api.compute.volumes.test_attach_volume.AttachVolumeTestJSON."
                "test_attach_detach_volume")
    assert runs("tempest.scenario.test_volume_boot_pattern.TestVolumeBootPattern."
                "test_volume_boot_pattern")
    assert not runs("tempest.api.network.test_networks.NetworksTest.test_list_networks")
    assert not runs("tempest.api.compute.servers.test_create_server.ServersTestJSON."
                    "test_list_servers")
    assert not runs("tempest.api.volume.admin.test_encrypted_volumes_extend."
                    "EncryptedVolumesExtendAttachedTest."
                    "test_extend_attached_encrypted_volume_luksv1")


def test_project_runs_the_job_in_check():
    projects = [item["project"] for item in _config() if "project" in item]
    assert len(projects) == 1
    assert JOB in projects[0]["check"]["jobs"]
