"""Each store implements its protocol (storage/protocols.py) method by method: same names,
same async-ness, same parameters, so the protocol is the true list of what a store offers."""

from __future__ import annotations

import inspect

import pytest

from storage import protocols
from storage.admin_sessions import AdminSessionStore
from storage.admin_signins import AdminSignInStore
from storage.audit import AuditLog
from storage.connections import ConnectionStore
from storage.leases import LeaseStore
from storage.login_states import LoginStateStore
from storage.privileges import PrivilegeStore
from storage.recipe_runs import RecipeRunStore
from storage.recipe_settings import RecipeSettingsStore
from storage.welcomes import WelcomeStore

PAIRS = [
    (protocols.ConnectionRecords, ConnectionStore),
    (protocols.LoginStateRecords, LoginStateStore),
    (protocols.AuditRecords, AuditLog),
    (protocols.LeaseRecords, LeaseStore),
    (protocols.RecipeSettingRecords, RecipeSettingsStore),
    (protocols.RecipeRunRecords, RecipeRunStore),
    (protocols.PrivilegeRecords, PrivilegeStore),
    (protocols.AdminSessionRecords, AdminSessionStore),
    (protocols.AdminSignInRecords, AdminSignInStore),
    (protocols.WelcomeRecords, WelcomeStore),
]


def public(cls: type) -> dict[str, object]:
    members = {}
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if callable(member) or isinstance(member, property | staticmethod):
            members[name] = member
    return members


@pytest.mark.parametrize(("protocol", "store"), PAIRS, ids=[p.__name__ for p, _ in PAIRS])
def test_store_implements_its_protocol(protocol: type, store: type) -> None:
    wanted = public(protocol)
    offered = public(store)
    assert sorted(wanted) == sorted(offered), "the protocol lists every public method, no more"
    for name, declared in wanted.items():
        actual = offered[name]
        if isinstance(declared, property):
            assert isinstance(actual, property), name
            continue
        declared_fn = getattr(protocol, name)
        actual_fn = getattr(store, name)
        assert inspect.iscoroutinefunction(declared_fn) == inspect.iscoroutinefunction(actual_fn), (
            name
        )
        declared_parameters = [
            (p.name, p.kind, p.default is inspect.Parameter.empty)
            for p in inspect.signature(declared_fn).parameters.values()
        ]
        actual_parameters = [
            (p.name, p.kind, p.default is inspect.Parameter.empty)
            for p in inspect.signature(actual_fn).parameters.values()
        ]
        assert declared_parameters == actual_parameters, name
