"""Least privilege: once the TUN device, its routes and every socket are open, the node needs no root at all
(a non-persistent TUN vanishes with its descriptor; nothing later touches routes or ports below 1024), so it
becomes an ordinary user for good: supplementary groups, group and user, real, effective and saved alike."""

import os
import pwd

import structlog

log = structlog.get_logger("appliance.privileges")


def lookup(user: str) -> pwd.struct_passwd:
    """The account ``user`` names (a name or a numeric uid); KeyError if there is none."""
    return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)


def drop_privileges(user: str, *, hand_over: tuple[str, ...] = ()) -> None:
    """Become ``user`` and its primary group, with no supplementary groups, irrevocably. ``hand_over``: files
    made as root that the node must still remove itself at exit (its control socket) are given to ``user``."""
    account = lookup(user)
    uid, gid = account.pw_uid, account.pw_gid
    for path in hand_over:
        if path and os.path.exists(path):
            os.chown(path, uid, gid)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise RuntimeError(f"could not become {user} (uid {uid}, gid {gid}) for good")
    try:
        os.setuid(0)
    except PermissionError:
        pass  # as it should be: root cannot be had back
    else:
        raise RuntimeError("after dropping privileges the process could become root again: refusing to run")
    log.info("node.privileges_dropped", user=account.pw_name, uid=uid, gid=gid)
