"""``studio up``, ``studio worker``, ``studio api``, ``studio doctor``."""

from __future__ import annotations

import typer

from backend.cli.output import JSON_OPTION, emit


def check_port_free(host: str, port: int) -> None:
    """One clear line (not uvicorn's six) when ``host:port`` cannot be listened on."""
    import errno
    import socket

    from backend.cli.output import fail

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except socket.gaierror:
        fail(f"--host {host} is not an address of this machine; give one it has, such as "
             "127.0.0.1 or 0.0.0.0.")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"Port {port} on {host} is already in use (another `studio api`, or another "
                 "program). Stop it, or pick another port with --port.")
        if exc.errno == errno.EACCES:
            fail(f"Port {port} needs administrator rights on this machine; pick one above 1023 "
                 "with --port.")
        fail(f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Check --host and --port.")


def register(app: typer.Typer) -> None:
    @app.command()
    def up(no_worker: bool = typer.Option(False, "--no-worker", help="Start no worker here."),
           no_api: bool = typer.Option(False, "--no-api", help="Start no API server."),
           no_studio: bool = typer.Option(
               False, "--no-studio",
               help="Headless: services, the API and a worker, without the web UI."),
           ) -> None:
        """Start everything: services, migrations, a worker, the API and the studio."""
        from backend.cli.output import fail
        from backend.launcher import run_up

        if no_studio and no_api and no_worker:
            fail("With --no-studio, --no-api and --no-worker there is nothing to start.")
        raise typer.Exit(run_up(with_worker=not no_worker, with_api=not no_api,
                                with_studio=not no_studio))

    @app.command()
    def worker(
        queues: str = typer.Option("cpu,gpu", help="Comma-separated queues: cpu, gpu."),
        concurrency: int = typer.Option(None, min=1, max=64,
                                        help="Jobs at once (default: settings)."),
        name: str = typer.Option(
            None, help="Worker name (default: studio-<queues>-<pid>@<host>, unique per process)."),
    ) -> None:
        """Run a worker for the given queues (start more on GPU machines with --queues gpu)."""
        from backend.cli.output import fail
        from backend.worker.celery_app import QUEUES
        from backend.worker.main import WorkerNameTaken, run_worker

        wanted = [q.strip() for q in queues.split(",") if q.strip()]
        bad = [q for q in wanted if q not in QUEUES]
        if bad or not wanted:
            raise typer.BadParameter(f"queues must be among {', '.join(QUEUES)}")
        try:
            run_worker(wanted, concurrency=concurrency, name=name)
        except WorkerNameTaken as err:
            fail(str(err))

    @app.command()
    def api(host: str = typer.Option(None),
            port: int = typer.Option(None, min=1, max=65535)) -> None:
        """Serve the OpenAI-compatible API."""
        import uvicorn

        from backend.config import get_settings

        s = get_settings()
        host, port = host or s.host, port or s.api_port
        check_port_free(host, port)
        uvicorn.run("backend.api.app:app", host=host, port=port)

    @app.command()
    def doctor(as_json: bool = JSON_OPTION) -> None:
        """Check Python, torch/GPU, Postgres + pgvector, Redis, schema and workers."""
        from backend.services.system import doctor as run_doctor

        report = run_doctor()

        def human(r: object) -> None:
            rep = report
            typer.echo(f"Python      {rep.python}  ({rep.platform})")
            typer.echo(f"torch       {rep.torch}  CUDA: {'yes ' + ', '.join(rep.gpus) if rep.cuda else 'no'}")
            typer.echo(f"Postgres    {rep.postgres}  pgvector {rep.pgvector}"
                       f"{'  (embedded)' if rep.embedded_postgres else ''}")
            typer.echo(f"Schema      {rep.schema_revision} (code: {rep.schema_head})"
                       f"{'  (' + rep.schema_action + ')' if rep.schema_action else ''}")
            typer.echo(f"Redis       {rep.redis}{'  (embedded)' if rep.embedded_redis else ''}")
            typer.echo(f"Workers     {len(rep.workers)} alive")
            for w in rep.workers:
                typer.echo(f"  {w['hostname']}  queues={','.join(w['queues'])}  {w['device']}")
            typer.echo(f"Data dir    {rep.data_dir}")
            for p in rep.problems:
                typer.secho(f"Problem: {p}", fg=typer.colors.YELLOW)
            typer.echo("OK" if rep.ok else "Some checks failed.")

        emit(report, as_json, human)
        if not report.ok:
            raise typer.Exit(1)
