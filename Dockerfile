# The sluice command (and so `sluice demo`), built from this repository.
#   docker build -t sluice .
#   docker run --rm sluice demo --help
# docker-compose.yml runs the demo against Kafka with Prometheus and Grafana.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -o /out/sluice ./cmd/sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
# sluice demo --metrics-addr 0.0.0.0:9464 serves /metrics, /healthz, /readyz.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
