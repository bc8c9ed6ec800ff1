import socket

import pytest

from lathe.errors import PortInUseError
from lathe.platform.processes import ProcessState, StateStore, port_is_free, require_free_port


def test_port_checks_see_a_listening_socket():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(PortInUseError, match="LATHE_X_PORT"):
            require_free_port(port, "x", "LATHE_X_PORT")
    assert port_is_free(port)


def test_state_store_round_trip(tmp_path):
    store = StateStore(tmp_path / "run")
    state = ProcessState("mlflow", 123, 5000, "http://127.0.0.1:5000", "/tmp/log", ["mlflow", "server"])
    store.save(state)
    assert store.load("mlflow") == state
    assert (tmp_path / "run" / "mlflow.pid").read_text().strip() == "123"
    store.remove("mlflow")
    assert store.load("mlflow") is None
