from lathe.errors import AliasNotFoundError, ConfigError, LatheError, PortInUseError, RegistryUnavailableError


def test_errors_render_in_openai_shape():
    body = AliasNotFoundError("model 'm' has no alias 'x'", param="alias").to_openai()
    assert body == {
        "error": {
            "message": "model 'm' has no alias 'x'",
            "type": "invalid_request_error",
            "param": "alias",
            "code": "alias_not_found",
        }
    }


def test_hint_joins_the_one_line_message():
    err = PortInUseError("port 5000 is in use", hint="set LATHE_MLFLOW_PORT")
    assert err.one_line() == "port 5000 is in use — set LATHE_MLFLOW_PORT"
    assert "\n" not in err.one_line()


def test_status_and_exit_codes_follow_the_kind_of_error():
    assert ConfigError("x").exit_code == 2
    assert RegistryUnavailableError("x").status_code == 503
    assert issubclass(PortInUseError, LatheError)
