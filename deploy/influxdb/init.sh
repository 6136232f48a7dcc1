#!/bin/sh
# InfluxDB 2.x set-up for the hub, run once by the influxdb:2 image (docker-entrypoint-initdb.d) after
# it created org "city", bucket "cityhub/raw" and the admin token from DOCKER_INFLUXDB_INIT_*.
# Adds what the hub and Grafana expect (ingest/store/influx.py, grafana/): the rollup bucket, DBRP
# mappings so InfluxQL's /query finds database "cityhub" (policies raw and rollup), the downsampling
# task, and a read-only v1 user for Grafana.
set -eu
org="${DOCKER_INFLUXDB_INIT_ORG}"
bucket_id() {
    influx bucket list --org "$org" --name "$1" --hide-headers | cut -f1
}
influx bucket create --org "$org" --name cityhub/rollup --retention 43800h
raw=$(bucket_id cityhub/raw)
rollup=$(bucket_id cityhub/rollup)
influx v1 dbrp create --org "$org" --db cityhub --rp raw --bucket-id "$raw" --default
influx v1 dbrp create --org "$org" --db cityhub --rp rollup --bucket-id "$rollup"
influx task create --org "$org" --file /etc/cityhub/readings_1m.flux
influx v1 auth create --org "$org" --username "${INFLUX_GRAFANA_USER}" \
    --password "${INFLUX_GRAFANA_PASSWORD}" --read-bucket "$raw" --read-bucket "$rollup"
