FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY procexec procexec
COPY engine engine
COPY api api
COPY workers workers
COPY examples examples
RUN pip install --no-cache-dir .
ENV PROCEXEC_DATA_DIR=/data
EXPOSE 8080
CMD ["procexec", "api", "--host", "0.0.0.0", "--port", "8080"]
