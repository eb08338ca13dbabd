"""Start-up, serving and graceful shutdown of the webhook process.

Two listeners, as upstream: HTTPS on --port for admission and health, plain HTTP on
--metrics-port for /metrics. SIGTERM or SIGINT stops accepting, lets in-flight requests finish
(at most 10 s, upstream's timeout) and exits 0; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from ssl import SSLContext

import structlog
from aiohttp import web

from webhook.admission.extensions import load_extensions
from webhook.admission.policy import parse_policy
from webhook.certificates.bootstrap import Bootstrap, CaBundleCheck, CaBundleWatch
from webhook.certificates.issuing import names_cover, subject_alt_names
from webhook.certificates.serving import CertificateReloader, LoadedCertificate, server_context
from webhook.config import Config
from webhook.errors import ApiError, ConfigError, WebhookError
from webhook.imds import account_and_partition
from webhook.kube import Api, client_configuration
from webhook.server.app import Webhook, make_metrics_app, make_webhook_app
from webhook.server.audit import start_auditor
from webhook.server.clients import require_client_certificates
from webhook.server.metrics import Metrics
from webhook.sources.associations import AssociationSource
from webhook.sources.files import PolledFile, file_sources
from webhook.sources.informers import start_informers
from webhook.sources.store import Store
from webhook.telemetry import production_registry

__all__ = ["serve"]

SHUTDOWN_TIMEOUT = 10.0
log = structlog.get_logger("webhook")


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
    """Run until a signal; returns the exit status. Raises ConfigError on bad start-up input.

    Every resource goes on the exit stack the moment it exists, so a start-up step that fails
    (a bad policy file, a port in use) still stops whatever was started before it, in reverse
    order: the listeners first (in-flight requests finish), then the loops, then the watches.
    """
    config = await _with_instance_account(config)
    store = Store(config.mutation)
    metrics = Metrics(production_registry())
    metrics.watch_store(store)
    async with contextlib.AsyncExitStack() as stack:
        api = None
        if config.cert_bootstrap or config.webhook_configuration:
            api = Api(client_configuration(config))
        bootstrap = await _bootstrap(config, api) if api is not None else None
        if bootstrap is not None:
            config = dataclasses.replace(
                config, tls_cert=str(bootstrap.cert_path), tls_key=str(bootstrap.key_path)
            )
        context = server_context(config.tls_min_version, config.tls_cipher_suites)
        certificates = CertificateReloader(
            context,
            config.tls_cert,
            config.tls_key,
            on_reload=_report_certificate(metrics),
            client_ca=config.client_ca_file,
            factory=functools.partial(
                server_context, config.tls_min_version, config.tls_cipher_suites
            ),
        )
        loaded = certificates.load()
        metrics.certificate_expiry.set(loaded.not_after.timestamp())
        _check_certificate_names(config)
        associations = AssociationSource(store) if config.pod_identity_associations else None
        polled = file_sources(config, store, metrics.source_reloads_counter, associations)
        if not config.service_accounts_files:
            informers = start_informers(
                config,
                store,
                asyncio.get_running_loop(),
                on_error=lambda source: metrics.api_errors.labels(source).inc(),
                on_fetch=lambda result: metrics.fetches.labels(result).inc(),
            )
            stack.push_async_callback(informers.close)
        if associations is not None:
            associations.watch(
                api or Api(client_configuration(config)),
                asyncio.get_running_loop(),
                watch_seconds=max(1, int(config.resync_period)),
                on_error=lambda source: metrics.api_errors.labels(source).inc(),
            )
            stack.push_async_callback(associations.close)
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

        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("certificate-reload", certificates.run)
        ]
        loops += [(f"poll {file.path}", file.run) for file in polled]
        if api is not None:
            loops.append(("ca-bundle-watch", _ca_bundle_watch(hook, api, bootstrap).run))
        if config.audit_pods:
            auditor = start_auditor(hook, asyncio.get_running_loop())
            stack.push_async_callback(auditor.close)
            loops.append(("pod-audit", auditor.run))
        for name, run in loops:
            await stack.enter_async_context(background(hook, name, run))
        stop = asyncio.Event()
        stack.callback(_install_signal_handlers(stop))
        webhook_app, metrics_app = make_webhook_app(hook), make_metrics_app(hook)
        require_client_certificates(webhook_app, metrics_app, config)
        await _listen(stack, webhook_app, config.port, context)
        await _listen(stack, metrics_app, config.metrics_port, None)
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
    log.info("stopped")
    return 0


@contextlib.asynccontextmanager
async def background(
    hook: Webhook, name: str, run: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """Run a loop for as long as the block lasts, then cancel and await it. A loop that dies
    is logged with its traceback and named on /readyz, instead of vanishing until shutdown."""

    async def supervised() -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background_task_died", task=name)
            hook.stopped_tasks.add(name)
        else:
            log.error("background_task_returned", task=name)
            hook.stopped_tasks.add(name)

    task = asyncio.create_task(supervised(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _listen(
    stack: contextlib.AsyncExitStack, app: web.Application, port: int, ssl: SSLContext | None
) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, port=port, ssl_context=ssl, reuse_address=True).start()


async def _with_instance_account(config: Config) -> Config:
    """--compose-role-arn: the account and partition of this EC2 instance, read once."""
    if not config.mutation.compose_role_arn:
        return config
    account, partition = await asyncio.to_thread(account_and_partition)
    mutation = dataclasses.replace(config.mutation, account_id=account, partition=partition)
    return dataclasses.replace(config, mutation=mutation)


async def _bootstrap(config: Config, api: Api) -> Bootstrap | None:
    """--cert-bootstrap: the Secret-held pair, created or read before anything is served."""
    if not config.cert_bootstrap:
        return None
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
    return bootstrap


def _ca_bundle_watch(hook: Webhook, api: Api, bootstrap: Bootstrap | None) -> CaBundleWatch:
    certificates = hook.certificates

    def on_result(trusted: bool) -> None:
        hook.ca_bundle_trusted = trusted
        hook.metrics.ca_bundle_checked(trusted)

    return CaBundleWatch(
        CaBundleCheck(api, hook.config.webhook_configuration),
        served=Path(hook.config.tls_cert),
        bootstrap=bootstrap,
        on_rotated=certificates.check if certificates is not None else lambda: None,
        on_result=on_result,
        interval=hook.config.resync_period,
    )


def _check_certificate_names(config: Config) -> None:
    """Warn when the API server could not verify the served certificate through the Service
    (for example a Helm release renamed after its certificate was made)."""
    host = f"{config.service_name}.{config.namespace}.svc"
    try:
        names = subject_alt_names(Path(config.tls_cert).read_bytes())
    except (OSError, WebhookError):
        return  # already loaded once; a file swapped since then is the reloader's business
    if not names_cover(names, host):
        log.warning(
            "certificate_name_mismatch",
            expected=host,
            names=names,
            detail="the API server calling the Service will refuse this certificate; set "
            "--service-name and --namespace to the Service, or add the name to the certificate",
        )


def _install_signal_handlers(stop: asyncio.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT set `stop`; a second one exits at once. Returns the uninstaller."""
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if stop.is_set():
            log.warning("second_signal", signal=name, action="exiting now")
            os._exit(1)
        log.info("signal", signal=name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)

    def uninstall() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return uninstall
