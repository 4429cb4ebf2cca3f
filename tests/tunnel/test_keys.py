"""The cluster key file: what it accepts, and one clear line naming file, line, problem and fix for what it does
not."""

import re

import pytest

from tunnel.keys import ClusterKeys, generate_key_line

KEY_A = "00" * 32
KEY_B = "0123456789abcdef" * 4
KEY_C = "ff" * 32


def test_first_key_line_sends_and_every_listed_key_opens():
    text = f"# rotating from 7 to 8\n\n7 {KEY_A}\n   # next\n8 {KEY_B.upper()}\n"
    keys = ClusterKeys.parse(text)
    assert keys.send_id == 7
    assert dict(keys.keys) == {7: bytes(32), 8: bytes.fromhex(KEY_B)}


def test_load_reads_a_file_and_names_it_in_errors(tmp_path):
    path = tmp_path / "cluster.key"
    path.write_text(f"2 {KEY_C}\n")
    path.chmod(0o600)
    assert ClusterKeys.load(path).send_id == 2
    path.write_text(f"2 {KEY_C}\n3 abcd\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} line 2: key must be 64 hex digits (32 bytes)")):
        ClusterKeys.load(path)


def test_keys_never_appear_in_repr():
    keys = ClusterKeys.parse(f"1 {KEY_B}\n2 {KEY_C}")
    assert repr(keys) == "ClusterKeys(send_id=1, key_ids=[1, 2])"
    assert KEY_B not in repr(keys) and "\\x" not in repr(keys)


def test_keys_mapping_is_read_only():
    keys = ClusterKeys.parse(f"1 {KEY_B}")
    with pytest.raises(TypeError):
        keys.keys[2] = bytes(32)  # type: ignore[index]


BAD_FILES = [
    pytest.param(
        f"# header\n\n1 {KEY_A[:-2]}\n",
        "cluster.key line 3: key must be 64 hex digits (32 bytes), got 62 characters; "
        "generate one with `anycast-tcp keygen`",
        id="key-short",
    ),
    pytest.param(
        f"1 {KEY_A[:-1]}g\n",
        "cluster.key line 1: key must be 64 hex digits (32 bytes), got 64 characters; "
        "generate one with `anycast-tcp keygen`",
        id="key-not-hex",
    ),
    pytest.param(
        f"256 {KEY_A}\n",
        "cluster.key line 1: key id '256' must be a whole number from 0 to 255",
        id="id-too-big",
    ),
    pytest.param(f"-1 {KEY_A}\n", "cluster.key line 1: key id '-1' must be a whole number from 0 to 255", id="id-neg"),
    pytest.param(f"one {KEY_A}\n", "cluster.key line 1: key id 'one' must be a whole number", id="id-word"),
    pytest.param(
        f"{KEY_A}\n",
        "cluster.key line 1: expected `<key id> <key hex>`, got one field; generate one with `anycast-tcp keygen`",
        id="missing-id",
    ),
    pytest.param(
        f"1 {KEY_A} # current\n",
        "cluster.key line 1: expected `<key id> <key hex>`, got 4 (a comment goes on a line of its own); "
        "generate one with `anycast-tcp keygen`",
        id="trailing-comment",
    ),
    pytest.param(
        f"1 {KEY_A}\n1 {KEY_B}\n",
        "cluster.key line 2: key id 1 is listed twice (first on line 1); give each key its own id",
        id="duplicate-id",
    ),
    pytest.param(
        f"1 {KEY_A}\n2 {KEY_B}\n3 {KEY_C}\n",
        "cluster.key line 3: a third key; list at most 2 (the one to send with first, then the one rotating in or "
        "out): remove the retired key",
        id="three-keys",
    ),
    pytest.param(
        "# nothing yet\n\n",
        "cluster.key: no keys; add a line `<key id> <key hex>`, generate one with `anycast-tcp keygen`",
        id="empty",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_key_file_gets_one_line_naming_line_problem_and_fix(text, message):
    with pytest.raises(ValueError) as info:
        ClusterKeys.parse(text, source="cluster.key")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unreadable_and_non_utf8_files(tmp_path):
    missing = tmp_path / "nope.key"
    with pytest.raises(ValueError, match=r"nope\.key: cannot read the cluster key file \(No such file or directory\)"):
        ClusterKeys.load(missing)
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"1 \xff\xfe\n")
    binary.chmod(0o600)
    with pytest.raises(ValueError, match=r"binary\.key: not UTF-8 text \(byte 2\)"):
        ClusterKeys.load(binary)


def test_constructor_checks_what_code_hands_it():
    with pytest.raises(ValueError, match="send key id 3 is not among the key ids"):
        ClusterKeys(3, {1: bytes(32)})
    with pytest.raises(ValueError, match="key 1 must be 32 bytes"):
        ClusterKeys(1, {1: bytes(16)})
    with pytest.raises(ValueError, match="must hold 1 or 2 keys"):
        ClusterKeys(1, {1: bytes(32), 2: bytes(32), 3: bytes(32)})
    with pytest.raises(ValueError, match="key id 300 must be a whole number from 0 to 255"):
        ClusterKeys(300, {300: bytes(32)})


def test_generated_lines_parse_and_differ():
    first, second = generate_key_line(), generate_key_line(9)
    assert re.fullmatch(r"1 [0-9a-f]{64}", first) and second.startswith("9 ")
    keys = ClusterKeys.parse(f"{first}\n{second}\n")
    assert keys.send_id == 1 and keys.keys[1] != keys.keys[9]
    with pytest.raises(ValueError, match="key id 256 must be a whole number from 0 to 255"):
        generate_key_line(256)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_open_to_other_users_is_refused_with_the_fix(tmp_path, mode):
    path = tmp_path / "cluster.key"
    path.write_text(f"2 {KEY_C}\n")
    path.chmod(mode)
    with pytest.raises(
        ValueError, match=rf"open to other users \(mode 0{mode:o}\).*`chmod 600 {re.escape(str(path))}`"
    ):
        ClusterKeys.load(path)
    path.chmod(0o400)
    assert ClusterKeys.load(path).send_id == 2
