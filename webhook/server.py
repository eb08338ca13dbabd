"""Start-up, serving and graceful shutdown of the webhook process.

Two listeners, as upstream: HTTPS on --port for admission and health, plain HTTP on
--metrics-port for /metrics. SIGTERM or SIGINT stops accepting, lets in-flight requests finish
(at most 10 s, upstream's timeout) and exits 0; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from webhook.annotations import Note, parse_container_credentials
from webhook.app import Webhook, make_metrics_app, make_webhook_app
from webhook.associationsource import AssociationSource
from webhook.bootstrap import Bootstrap, CaBundleCheck
from webhook.config import Config
from webhook.errors import ConfigError, InputError
from webhook.extensions import load_extensions
from webhook.filesources import PolledFile
from webhook.imds import account_and_partition
from webhook.kube import (
    Api,
    ApiError,
    association_reflector,
    client_configuration,
    start_kubernetes,
)
from webhook.metrics import Metrics, production_registry
from webhook.policy import parse_policy
from webhook.sources import StaticSources, load_documents, service_account_objects
from webhook.store import Store
from webhook.tls import CertificateReloader, LoadedCertificate, server_context

__all__ = ["serve"]

SHUTDOWN_TIMEOUT = 10.0
log = structlog.get_logger("webhook")

Apply = Callable[[str | None], None]


def _report_certificate(
    metrics: Metrics,
) -> Callable[[LoadedCertificate | None, Exception | None], None]:
    def report(loaded: LoadedCertificate | None, error: Exception | None) -> None:
        if loaded is not None:
            metrics.certificate_reloads.labels("success").inc()
            metrics.certificate_expiry.set(loaded.not_after.timestamp())
            log.info(
                "certificate_reloaded", serial=f"{loaded.serial:x}", not_after=str(loaded.not_after)
            )
        else:
            metrics.certificate_reloads.labels("error").inc()
            log.error(
                "certificate_reload_failed",
                error=str(error),
                action="kept the previous certificate",
            )

    return report


def _service_accounts_apply(store: Store, paths: tuple[str, ...]) -> dict[str, Apply]:
    """One apply per --service-accounts file; any change re-lists the union of all files."""
    loaded: dict[str, list[tuple[str, str, dict[str, object]]]] = {}

    def for_path(path: str) -> Apply:
        def apply(text: str | None) -> None:
            if text is None:
                raise ValueError(f"{path} does not exist")
            notes: list[Note] = []
            try:
                loaded[path] = service_account_objects(load_documents(text, path), notes)
            except InputError as exc:
                raise ValueError(str(exc)) from None
            for note in notes:
                log.warning(note.code, detail=note.message)
            if len(loaded) == len(paths):
                store.replace_service_accounts(item for items in loaded.values() for item in items)

        return apply

    return {path: for_path(path) for path in paths}


def _config_map_apply(store: Store, config: Config) -> Apply:
    store.config_map_synced = False

    def apply(text: str | None) -> None:
        if text is None:
            store.set_config_map({})  # a deleted ConfigMap removes its entries (2d)
        else:
            documents = [d for d in load_documents(text, config.config_map_file) if d is not None]
            if len(documents) != 1:
                raise ValueError(f"{config.config_map_file}: expected one ConfigMap")
            scratch = StaticSources()
            try:
                scratch.set_config_map(
                    documents[0], namespace=config.namespace, config=config.mutation
                )
            except InputError as exc:
                raise ValueError(str(exc)) from None
            for note in scratch.notes:
                log.warning(note.code, detail=note.message)
            store.set_config_map(scratch.config_map)
        store.config_map_synced = True

    return apply


def _identities_apply(store: Store, associations: AssociationSource | None = None) -> Apply:
    def apply(text: str | None) -> None:
        # Upstream: a missing or empty file clears the identities; a bad one keeps them.
        identities = parse_container_credentials(text or "")
        if associations is not None:
            associations.set_file(identities)  # united with the associations
        else:
            store.set_identities(identities)

    return apply


def _file_sources(
    config: Config,
    store: Store,
    metrics: Metrics,
    associations: AssociationSource | None = None,
) -> list[PolledFile]:
    """The file-fed sources, loaded now (a bad file is fatal at start-up) and polled later."""
    applies: dict[str, tuple[str, Apply]] = {}
    if config.service_accounts_files:
        paths = tuple(dict.fromkeys(config.service_accounts_files))
        for path, apply in _service_accounts_apply(store, paths).items():
            applies[path] = ("service-accounts", apply)
        if config.watch_config_map and not config.config_map_file:
            raise ConfigError(
                "--watch-config-map with --service-accounts needs --config-map FILE "
                "(the ConfigMap is read from the cluster only when ServiceAccounts are)"
            )
    if config.watch_config_map and config.config_map_file:
        applies[config.config_map_file] = ("config-map", _config_map_apply(store, config))
    if config.container_credentials_file:
        applies[config.container_credentials_file] = (
            "container-credentials",
            _identities_apply(store, associations),
        )

    polled = []
    for path, (source, apply) in applies.items():

        def tracked(text: str | None, source: str = source, apply: Apply = apply) -> None:
            apply(text)
            metrics.source_reloads.labels(source, "success").inc()
            log.info("source_loaded", source=source, present=text is not None)

        def failed(error: Exception, source: str = source) -> None:
            metrics.source_reloads.labels(source, "error").inc()
            log.error(
                "source_reload_failed",
                source=source,
                error=str(error),
                action="kept the previous content",
            )

        file = PolledFile(path, tracked, on_error=failed)
        try:
            file.load()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load {path}: {exc}") from None
        polled.append(file)
    return polled


def _policy_file(path: str, hook: Webhook, metrics: Metrics) -> PolledFile:
    """The policy is reloaded like the other files; a bad new one keeps the old in force."""

    def apply(text: str | None) -> None:
        if text is None:
            raise ValueError(f"{path} does not exist")
        policy = parse_policy(text)  # PolicyError is a ValueError
        hook.extensions = dataclasses.replace(hook.extensions, policy=policy)
        metrics.source_reloads.labels("policy", "success").inc()
        log.info("policy_loaded", rules=[rule.name for rule in policy.rules])

    def failed(error: Exception) -> None:
        metrics.source_reloads.labels("policy", "error").inc()
        log.error("policy_reload_failed", error=str(error), action="kept the previous policy")

    file = PolledFile(path, apply, on_error=failed)
    file.check()  # already loaded by load_extensions; this records the digest
    return file


async def serve(config: Config) -> int:
    """Run until a signal; returns the exit status. Raises ConfigError on bad start-up input."""
    if config.mutation.compose_role_arn:
        account, partition = await asyncio.to_thread(account_and_partition)
        mutation = dataclasses.replace(config.mutation, account_id=account, partition=partition)
        config = dataclasses.replace(config, mutation=mutation)
    store = Store(config.mutation)
    metrics = Metrics(production_registry())
    metrics.watch_store(store)
    context = server_context(config.tls_min_version, config.tls_cipher_suites)
    api = None
    bootstrap = None
    if config.cert_bootstrap or config.webhook_configuration:
        api = Api(client_configuration(config))
    if config.cert_bootstrap and api is not None:
        bootstrap = Bootstrap(
            api,
            namespace=config.namespace,
            secret=config.tls_secret,
            service=config.service_name,
            configuration=config.webhook_configuration,
            validity_days=config.cert_validity_days,
            extra_names=config.cert_extra_names,
        )
        try:
            await asyncio.to_thread(bootstrap.ensure_pair)
        except ApiError as exc:
            raise ConfigError(
                f"--cert-bootstrap: cannot prepare Secret {config.tls_secret}: {exc}"
            ) from None
        config = dataclasses.replace(
            config, tls_cert=str(bootstrap.cert_path), tls_key=str(bootstrap.key_path)
        )
    certificates = CertificateReloader(
        context, config.tls_cert, config.tls_key, on_reload=_report_certificate(metrics)
    )
    loaded = certificates.load()
    metrics.certificate_expiry.set(loaded.not_after.timestamp())
    associations = AssociationSource(store) if config.pod_identity_associations else None
    polled = _file_sources(config, store, metrics, associations)
    kubernetes = None
    if not config.service_accounts_files:
        kubernetes = start_kubernetes(
            config,
            store,
            asyncio.get_running_loop(),
            on_error=lambda source: metrics.api_errors.labels(source).inc(),
            on_fetch=lambda result: metrics.fetches.labels(result).inc(),
        )
    stop_associations = threading.Event()
    if associations is not None:
        association_reflector(
            api or Api(client_configuration(config)),
            asyncio.get_running_loop(),
            stop_associations,
            on_list=associations.listed,
            on_event=associations.changed,
            watch_seconds=max(1, int(config.resync_period) or 60),
            on_error=lambda source: metrics.api_errors.labels(source).inc(),
        )
    extensions = load_extensions(
        config.policy_file,
        config.rules,
        rule_timeout=config.rule_timeout,
        failure_policy=config.rule_failure_policy,
    )
    hook = Webhook(
        config=config,
        store=store,
        metrics=metrics,
        certificates=certificates,
        extensions=extensions,
    )
    if config.policy_file:
        polled.append(_policy_file(config.policy_file, hook, metrics))

    runners = [
        web.AppRunner(make_webhook_app(hook), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT),
        web.AppRunner(make_metrics_app(hook), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT),
    ]
    tasks = [asyncio.create_task(certificates.run())]
    if api is not None:
        tasks.append(asyncio.create_task(_watch_ca_bundle(hook, api, bootstrap, certificates)))
    tasks += [asyncio.create_task(file.run()) for file in polled]
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    try:
        for runner in runners:
            await runner.setup()
        await web.TCPSite(
            runners[0], port=config.port, ssl_context=context, reuse_address=True
        ).start()
        await web.TCPSite(runners[1], port=config.metrics_port, reuse_address=True).start()
        log.info(
            "started",
            port=config.port,
            metrics_port=config.metrics_port,
            ready=hook.ready,
            certificate_serial=f"{loaded.serial:x}",
            ignored_flags=list(config.ignored_flags) or None,
            policy=config.policy_file or None,
            rules=[rule.name for rule in extensions.rules] or None,
        )
        await stop.wait()
        log.info("shutting_down", timeout_seconds=SHUTDOWN_TIMEOUT)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in runners:
            await runner.cleanup()
        if kubernetes is not None:
            await kubernetes.close()
        stop_associations.set()
    log.info("stopped")
    return 0


async def _watch_ca_bundle(
    hook: Webhook,
    api: Api,
    bootstrap: Bootstrap | None,
    certificates: CertificateReloader,
) -> None:
    """Rotate the bootstrapped pair when due, keep the caBundle in step, report drift; every
    30 s, or every --resync-period when that is shorter."""
    interval = max(1.0, min(30.0, hook.config.resync_period))
    check = CaBundleCheck(api, hook.config.webhook_configuration)
    while True:
        try:
            if bootstrap is not None:
                if await asyncio.to_thread(bootstrap.ensure_pair):
                    certificates.check()
                await asyncio.to_thread(bootstrap.reconcile_ca_bundle)
            served = await asyncio.to_thread(Path(hook.config.tls_cert).read_bytes)
            trusted = await asyncio.to_thread(check.trusted, served)
        except (ApiError, OSError) as exc:
            log.warning("ca_bundle_check_failed", error=str(exc))
        else:
            if trusted != hook.ca_bundle_trusted:
                event = "ca_bundle_trusted" if trusted else "ca_bundle_mismatch"
                (log.info if trusted else log.error)(event, configuration=check.configuration)
            hook.ca_bundle_trusted = trusted
            hook.metrics.ca_bundle_trusted.set(1 if trusted else 0)
        await asyncio.sleep(interval)


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if stop.is_set():
            log.warning("second_signal", signal=name, action="exiting now")
            os._exit(1)
        log.info("signal", signal=name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
