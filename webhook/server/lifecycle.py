"""Start-up, serving and graceful shutdown of the webhook process.

Two listeners, as upstream: HTTPS on --port for admission and health (connections.py: limits,
timeouts and the drain), plain HTTP on --metrics-port for /metrics. A stop loses nothing the
API server sent: on SIGTERM /readyz says 503 and everything else goes on as usual for
--shutdown-delay, while the endpoint removal reaches every API server; then the drain
(connections.py) answers each connection's next request with `Connection: close`, closes the
listener and quiet connections, and waits for the rest (at most 10 s, upstream's timeout);
exit 0. SIGINT skips the delay; a second signal exits at once with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import resource
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from webhook.admission.extensions import load_extensions
from webhook.certificates.serving import CertificateReloader, LoadedCertificate, server_context
from webhook.certificates.summary import names_cover, summarize
from webhook.config import Config
from webhook.errors import ApiError, ConfigError
from webhook.imds import account_and_partition
from webhook.kube import Api, client_configuration
from webhook.server.allocator import fix_mmap_threshold, trim_after_closes
from webhook.server.app import HANDLER_ARGS, Webhook, make_metrics_app, make_webhook_app
from webhook.server.clients import require_client_certificates
from webhook.server.connections import GuardedSite
from webhook.server.metrics import Metrics
from webhook.sources.associations import AssociationSource
from webhook.sources.files import PolledFile, file_sources
from webhook.sources.informers import start_informers
from webhook.sources.store import Store
from webhook.telemetry import production_registry

if TYPE_CHECKING:
    from webhook.certificates.bootstrap import Bootstrap, CaBundleWatch

__all__ = ["serve"]

log = structlog.get_logger("webhook")
# What runner.cleanup waits for after the drain has had its time: only stragglers are left.
_CLEANUP_TIMEOUT = 1.0


def _check_validity(loaded: LoadedCertificate, warn_within: float) -> None:
    """A log line for a certificate the API server refuses, or will refuse soon (the metric
    pod_identity_webhook_certificate_problem says the same at every scrape)."""
    problem = loaded.problem(datetime.now(UTC), warn_within)
    if problem is None:
        return
    details = {
        "expired": "the API server refuses it: every admission fails",
        "not_yet_valid": "the API server refuses it until then (a clock skew?)",
        "expiring_soon": "renew it before it expires",
    }
    (log.warning if problem == "expiring_soon" else log.error)(
        f"certificate_{problem}",
        serial=f"{loaded.serial:x}",
        not_before=str(loaded.not_before),
        not_after=str(loaded.not_after),
        detail=details[problem],
    )


def _report_certificate(
    metrics: Metrics, warn_within: float
) -> Callable[[LoadedCertificate | None, Exception | None], None]:
    def report(loaded: LoadedCertificate | None, error: Exception | None) -> None:
        if loaded is not None:
            metrics.certificate_reloads.labels("success").inc()
            metrics.certificate_expiry.set(loaded.not_after.timestamp())
            log.info(
                "certificate_reloaded", serial=f"{loaded.serial:x}", not_after=str(loaded.not_after)
            )
            _check_validity(loaded, warn_within)
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
        from webhook.admission.policy import parse_policy

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
    _raise_file_limit(config.limits.max_connections)
    fix_mmap_threshold()  # allocator.py: TLS read buffers are returned when a connection closes
    store = Store(config.mutation)
    metrics = Metrics(production_registry())
    metrics.watch_store(store)
    async with contextlib.AsyncExitStack() as stack:
        api = None
        if config.cert_bootstrap or config.webhook_configuration:
            api = Api(client_configuration(config))
        bootstrap = await _bootstrap(config, api, stack) if api is not None else None
        if bootstrap is not None:
            config = dataclasses.replace(
                config, tls_cert=str(bootstrap.cert_path), tls_key=str(bootstrap.key_path)
            )
        context, certificates, loaded = _serving_certificate(config, metrics)
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
            from webhook.server.audit import start_auditor  # only with --audit-pods

            auditor = start_auditor(hook, asyncio.get_running_loop())
            stack.push_async_callback(auditor.close)
            loops.append(("pod-audit", auditor.run))
        for name, run in loops:
            await stack.enter_async_context(background(hook, name, run))
        stop: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        stack.callback(_install_signal_handlers(stop))
        webhook_app, metrics_app = make_webhook_app(hook), make_metrics_app(hook)
        require_client_certificates(webhook_app, metrics_app, config)
        site = await _listen_tls(stack, hook, webhook_app, context)
        await stack.enter_async_context(
            background(hook, "memory-trim", lambda: trim_after_closes(lambda: site.closed_total))
        )
        await _listen(stack, metrics_app, config.metrics_port)
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
        signal_name = await stop
        await _drain(
            hook, site, delay=config.limits.shutdown_delay if signal_name == "SIGTERM" else 0
        )
    log.info("stopped")
    return 0


def _serving_certificate(
    config: Config, metrics: Metrics
) -> tuple[ssl.SSLContext, CertificateReloader, LoadedCertificate]:
    """The listening context with the serving pair loaded (and reloaded), its metrics, and a
    word at start-up when a TLS client would refuse it now or soon."""
    context = server_context(config.tls_min_version, config.tls_cipher_suites)
    certificates = CertificateReloader(
        context,
        config.tls_cert,
        config.tls_key,
        on_reload=_report_certificate(metrics, config.cert_validity_warning),
        client_ca=config.client_ca_file,
        factory=functools.partial(server_context, config.tls_min_version, config.tls_cipher_suites),
    )
    loaded = certificates.load()
    metrics.certificate_expiry.set(loaded.not_after.timestamp())
    metrics.watch_certificate(lambda: certificates.current, config.cert_validity_warning)
    _check_validity(loaded, config.cert_validity_warning)
    return context, certificates, loaded


async def _drain(hook: Webhook, site: GuardedSite, *, delay: float) -> None:
    """Lose no request on the way out (the module's docstring says how)."""
    limits = hook.config.limits
    hook.draining = True
    log.info(
        "shutting_down",
        delay_seconds=delay,
        timeout_seconds=limits.shutdown_timeout,
        open_connections=site.open_connections,
    )
    await asyncio.sleep(delay)
    left = await site.drain(limits.shutdown_timeout)
    if left:
        log.warning("drain_timed_out", open_connections=left, action="closing them")


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


async def _listen(stack: contextlib.AsyncExitStack, app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_CLEANUP_TIMEOUT)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, port=port, reuse_address=True).start()


async def _listen_tls(
    stack: contextlib.AsyncExitStack,
    hook: Webhook,
    app: web.Application,
    context: ssl.SSLContext,
) -> GuardedSite:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_CLEANUP_TIMEOUT)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    metrics = hook.metrics
    site = GuardedSite(
        runner,
        hook.config.port,
        context,
        hook.config.limits,
        handler_args=HANDLER_ARGS,
        on_close=metrics.connection_closed,
    )
    await site.start()
    metrics.open_connections.set_function(lambda: site.open_connections)
    return site


def _raise_file_limit(connections: int) -> None:
    """Every connection is a file descriptor. Raise the soft limit to the hard one, as Go's
    runtime does for upstream, and say so when even that leaves little room."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    # Certificate and source reloads, the API client, the metrics port: a few dozen more.
    if soft != resource.RLIM_INFINITY and soft < connections + 64:
        log.warning(
            "file_limit_low",
            limit=soft,
            max_connections=connections,
            detail="lower --max-connections or raise the open-file limit",
        )


async def _with_instance_account(config: Config) -> Config:
    """--compose-role-arn: the account and partition of this EC2 instance, read once."""
    if not config.mutation.compose_role_arn:
        return config
    account, partition = await asyncio.to_thread(account_and_partition)
    mutation = dataclasses.replace(config.mutation, account_id=account, partition=partition)
    return dataclasses.replace(config, mutation=mutation)


async def _bootstrap(
    config: Config, api: Api, stack: contextlib.AsyncExitStack
) -> Bootstrap | None:
    """--cert-bootstrap: the Secret-held pair, created or read before anything is served; its
    files are removed on the way out."""
    if not config.cert_bootstrap:
        return None
    from webhook.certificates.bootstrap import Bootstrap

    bootstrap = Bootstrap(
        api,
        namespace=config.namespace,
        secret=config.tls_secret,
        service=config.service_name,
        configuration=config.webhook_configuration,
        validity_days=config.cert_validity_days,
        extra_names=config.cert_extra_names,
    )
    stack.callback(bootstrap.close)
    try:
        await asyncio.to_thread(bootstrap.ensure_pair)
    except ApiError as exc:
        raise ConfigError(
            f"--cert-bootstrap: cannot prepare Secret {config.tls_secret}: {exc}"
        ) from None
    return bootstrap


def _ca_bundle_watch(hook: Webhook, api: Api, bootstrap: Bootstrap | None) -> CaBundleWatch:
    from webhook.certificates.bootstrap import CaBundleCheck, CaBundleWatch

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
        names = summarize(Path(config.tls_cert).read_bytes()).names
    except (OSError, ValueError):
        return  # already loaded once; a file swapped since then is the reloader's business
    if not names_cover(names, host):
        log.warning(
            "certificate_name_mismatch",
            expected=host,
            names=names,
            detail="the API server calling the Service will refuse this certificate; set "
            "--service-name and --namespace to the Service, or add the name to the certificate",
        )


def _install_signal_handlers(stop: asyncio.Future[str]) -> Callable[[], None]:
    """SIGTERM/SIGINT resolve `stop` with the signal's name; a second one exits at once.
    Returns the uninstaller."""
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if stop.done():
            log.warning("second_signal", signal=name, action="exiting now")
            os._exit(1)
        log.info("signal", signal=name)
        stop.set_result(name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)

    def uninstall() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return uninstall
