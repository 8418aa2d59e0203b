# procexec's image: the API, the workers, the beat and Flower all run it (docker-compose.yml).
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t procexec:latest .
#
# GIT_COMMIT is the commit the image reports (`commit` in GET /service/process-exec): the
# build context has no .git to ask. Without it the image reports `unknown`.
#
# Your own processes go in processes/ (copied to /opt/processes, which is on PYTHONPATH; a
# processes/requirements.txt is installed too): name their modules in PROCEXEC_PROCESSES.
# docs/operations.md#deploying-with-compose has the worked example.

# The wheel, built from the sources alone (the image keeps no source tree: `python -c` and
# `celery -A` import the installed procexec, never a folder of the working directory).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src src
COPY engine engine
COPY api api
COPY workers workers
COPY examples examples
# read by the wheel's build alone (src/procexec/_stamp.py), which stamps it into the wheel; an
# ARG of this stage, so nothing of it reaches the image below
ARG GIT_COMMIT=unknown
RUN GIT_COMMIT="${GIT_COMMIT}" pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# A fixed uid, so that volumes and host folders can be given to it.
ARG PROCEXEC_UID=10001
RUN useradd --uid "${PROCEXEC_UID}" --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin procexec \
    && mkdir /data && chown procexec:procexec /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY processes/ /opt/processes/
RUN if [ -f /opt/processes/requirements.txt ]; then \
        pip install --no-cache-dir -r /opt/processes/requirements.txt; \
    fi
ENV PROCEXEC_DATA_DIR=/data \
    PROCEXEC_EXAMPLES=false \
    PYTHONPATH=/opt/processes \
    PYTHONUNBUFFERED=1
WORKDIR /data
USER procexec
EXPOSE 8080 5555
CMD ["procexec", "api", "--host", "0.0.0.0", "--port", "8080"]
