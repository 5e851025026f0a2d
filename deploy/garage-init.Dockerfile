# The Garage CLI with a shell, to run deploy/garage-init.sh once.
ARG GARAGE_IMAGE=dxflrs/garage:v2.1.0
FROM ${GARAGE_IMAGE} AS garage

FROM alpine:3.20
COPY --from=garage /garage /usr/local/bin/garage
COPY garage-init.sh /usr/local/bin/garage-init
ENTRYPOINT ["/usr/local/bin/garage-init"]
