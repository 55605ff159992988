# A stand-in for docker.io/library/postgres where no registry is reachable: Debian's PostgreSQL 15
# on the local Debian base, with an entrypoint that keeps the official image's contract the chart
# relies on (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and PGDATA; *.sql and *.sh in
# /docker-entrypoint-initdb.d run once, on an empty data folder; the user postgres is uid/gid 999).
#
# Built by ./scripts/build-stand-ins.sh with images/stand-ins as its context.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="driftpilot stand-in: PostgreSQL" \
      org.opencontainers.image.description="Debian's PostgreSQL 15 behind the official image's entrypoint contract"
# The user first, with the official image's ids: the package's postinst keeps an existing one.
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/sh postgres \
    && apt-get update \
    && apt-get install --yes --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    LANG=C.UTF-8 \
    PGDATA=/var/lib/postgresql/data
COPY postgresql-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER 999:999
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
