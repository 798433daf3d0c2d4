import pytest

from aigc.hosts import loopback


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST.", "app.localhost", "127.0.0.1", "127.8.0.2", "::1", "::ffff:127.0.0.1", "::FFFF:7f00:1"])
def test_loopback_names_and_addresses_ipv4_mapped_ones_too(name):
    assert loopback(name)


@pytest.mark.parametrize("name", ["example.com", "localhost.example", "10.0.0.1", "0.0.0.0", "::", "::ffff:10.0.0.1", "[::1]", ""])
def test_other_names_and_addresses_are_not_loopback(name):
    assert not loopback(name)
