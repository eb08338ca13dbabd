"""The webhook's association source: associations united with the container-credentials file,
the association's role on decisions, readiness and the flag."""

from __future__ import annotations

from typing import Any

from tests.support.reviews import role_arn
from webhook.admission.mutation import decide
from webhook.admission.wire import Pod
from webhook.config import MutationConfig, config_from_argv
from webhook.sources.associations import AssociationSource, with_association_role
from webhook.sources.store import Store

ROLE = role_arn("app")


def association(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": "u"},
        "spec": {"serviceAccountName": name, "roleArn": ROLE, **spec},
    }


POD: Pod = {
    "metadata": {"name": "p"},
    "spec": {"serviceAccountName": "app", "containers": [{"name": "c"}]},
}


def test_associations_and_the_file_are_united() -> None:
    store = Store(MutationConfig())
    source = AssociationSource(store)
    store.service_accounts_synced = True
    states = [store.ready]  # the associations are not listed yet
    source.set_file(frozenset({("ns", "from-file")}))
    source.listed([association("ns", "app"), association("ns", "bad", roleArn="x")])
    states.append(store.ready)
    assert states == [False, True]
    assert store.identities == {("ns", "from-file"), ("ns", "app")}
    source.changed("ADDED", association("ns", "db"))
    source.changed("DELETED", association("ns", "app"))
    source.changed("MODIFIED", association("ns", "db", roleArn="nope"))  # refused: removed
    assert store.identities == {("ns", "from-file")}
    source.set_file(frozenset())
    assert store.identities == frozenset()


def test_the_decision_carries_the_associations_role() -> None:
    store = Store(MutationConfig())
    source = AssociationSource(store)
    source.listed([association("ns", "app", targetRoleArn="arn:aws:iam::444455556666:role/t")])
    store.put_service_account("ns", "app", {})
    decision = decide(POD, namespace="ns", sources=store, config=MutationConfig(), jitter=min)
    assert decision.method == "container_credentials"
    assert decision.role_arn == ""
    judged = with_association_role(decision, store)
    assert judged.role_arn == "arn:aws:iam::444455556666:role/t"
    assert judged.role_source == "pod-identity-association"
    assert judged.patch == decision.patch
    other = decide(
        {"metadata": {"name": "p"}, "spec": {"serviceAccountName": "x", "containers": []}},
        namespace="ns",
        sources=store,
        config=MutationConfig(),
    )
    assert with_association_role(other, store) is other


def test_the_flag() -> None:
    config, _, _ = config_from_argv(["--watch-pod-identity-associations=true"])
    assert config.pod_identity_associations is True
    assert config_from_argv([])[0].pod_identity_associations is False
