# The two commands of the README: `make run` and `make test`. Both install the Debian packages
# Missive needs when they are missing (as root, or through sudo), then build in ./build.

BUILD ?= build
JOBS ?= 2
BUILD_TYPE ?= RelWithDebInfo
# Arguments for the server started by `make run`, e.g. make run ARGS="--listen 127.0.0.1:7171"
ARGS ?=
# `make bars`: runs of each bar, and the open loop's rate (the bar's: 10,000/s)
BARS_RUNS ?= 3
BARS_RATE ?= 10000
# `make threads`: the open loop's rate while the server's threads are sampled
THREADS_RATE ?= 5000
# `make restart`: restarts on the saved database, and their open loop's rate
RESTART_RUNS ?= 2
RESTART_RATE ?= 5000
# `make compare`: runs of each load against each server, and the second open loop's rate
COMPARE_RUNS ?= 1
COMPARE_RATE ?= 5000
# `make push`: users (half of them offline, pushed) and the stand-in push gateway's answer time
PUSH_USERS ?= 4000
PUSH_ANSWER_MS ?= 50
# `make soak`: the open loop's rate and how long it runs
SOAK_RATE ?= 3000
SOAK_MINUTES ?= 20

PACKAGES = build-essential cmake ccache pkg-config libcaf-dev capnproto libcapnp-dev \
           libleveldb-dev libsnappy-dev libgtest-dev libbenchmark-dev libsodium-dev \
           libjemalloc-dev nlohmann-json3-dev
# Only for `make test` and `make compare`: the MQTT broker Missive is measured beside
# (benchmarks/compare-mosquitto.sh), which the MQTT load tool's smoke test runs against.
TEST_PACKAGES = mosquitto
INSTALL = $(PACKAGES)
test compare: INSTALL = $(PACKAGES) $(TEST_PACKAGES)

.PHONY: all deps configure build run test bench bars threads restart quiet login-storm push soak compare clean

all: build

deps:
	@missing=""; \
	for p in $(INSTALL); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

run: build
	$(BUILD)/apps/missive-server $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 600

bench: build
	$(BUILD)/benchmarks/missive_machine_bench
	$(BUILD)/benchmarks/missive_persistence_bench --benchmark_counters_tabular=true
	$(BUILD)/benchmarks/missive_actors_bench
	$(BUILD)/benchmarks/missive_wire_bench

bars: build
	benchmarks/bars.sh $(BUILD) $(BARS_RUNS) $(BARS_RATE)

threads: build
	benchmarks/threads.sh $(BUILD) $(THREADS_RATE)

restart: build
	benchmarks/restart.sh $(BUILD) $(RESTART_RUNS) $(RESTART_RATE)

quiet: build
	benchmarks/quiet.sh $(BUILD)

login-storm: build
	benchmarks/login-storm.sh $(BUILD)

push: build
	benchmarks/push.sh $(BUILD) $(PUSH_USERS) $(PUSH_ANSWER_MS)

soak: build
	benchmarks/soak.sh $(BUILD) $(SOAK_RATE) $(SOAK_MINUTES)

compare: build
	benchmarks/compare-mosquitto.sh $(BUILD) $(COMPARE_RUNS) $(COMPARE_RATE)

clean:
	rm -rf $(BUILD)
