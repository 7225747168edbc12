// Package deploy holds the files of the docker-compose demo (Prometheus and
// Grafana configuration, the Grafana dashboard) and, in its tests, the checks
// that keep them true to the code: docker-compose.yml's services, ports and
// mounted files, the Dockerfile's build path, the provisioning, and that every
// metric the dashboard queries is one the code registers. No Docker engine is
// needed; the checks read the files.
package deploy
