// The downsampled series on InfluxDB 2.x: what the hub's continuous query does on 1.x
// (ingest/store/influxschema.py): mean, min, max and count of each series' value per minute,
// every tag kept, into bucket cityhub/rollup as measurement readings_1m. Created by init.sh.
option task = {name: "readings_1m", every: 1m, offset: 10s}

data =
    from(bucket: "cityhub/raw")
        |> range(start: -task.every)
        |> filter(fn: (r) => r._measurement == "readings" and r._field == "value")

union(
    tables: [
        data |> aggregateWindow(every: 1m, fn: mean, createEmpty: false, timeSrc: "_start") |> set(key: "_field", value: "mean"),
        data |> aggregateWindow(every: 1m, fn: min, createEmpty: false, timeSrc: "_start") |> set(key: "_field", value: "min"),
        data |> aggregateWindow(every: 1m, fn: max, createEmpty: false, timeSrc: "_start") |> set(key: "_field", value: "max"),
        data |> aggregateWindow(every: 1m, fn: count, createEmpty: false, timeSrc: "_start") |> set(key: "_field", value: "count"),
    ],
)
    |> set(key: "_measurement", value: "readings_1m")
    |> to(bucket: "cityhub/rollup")
