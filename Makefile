# netwatch: the two commands that do all set-up on a fresh Debian machine.
#   make demo   installs what is missing, builds, runs the main job on the bundled example
#   make test   the whole test suite (lint included)
SHELL := /bin/bash
CARGO ?= cargo
# System packages the build and the tests need; installed only when missing.
APT_PACKAGES := libpcap-dev pkg-config tcpdump tshark nfdump
BIN := target/release/netwatch
DEMO_ENV := demo/hub-spoke
DEMO_TAGS := demo/ServiceTags_Demo.json

.PHONY: all deps build demo test lint unit bench clean

all: build

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages; run:  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }

build: deps
	$(CARGO) build --release --locked

demo: build
	@echo; echo "== IP flow verify: HTTPS from the Internet to vm-web1 (subnet NSG and NIC NSG both allow)"
	$(BIN) ip-flow-verify --resources $(DEMO_ENV) --service-tags $(DEMO_TAGS) --vm vm-web1 \
	  --direction Inbound --protocol TCP --local 10.1.1.4:443 --remote 52.178.4.10:50123
	@echo; echo "== IP flow verify: SSH from the Internet to vm-web1 (denied by the subnet NSG)"
	$(BIN) ip-flow-verify --resources $(DEMO_ENV) --service-tags $(DEMO_TAGS) --vm vm-web1 \
	  --direction Inbound --protocol TCP --local 10.1.1.4:22 --remote 52.178.4.10:40000 -o table
	@echo; echo "== IP flow verify with the per-rule trace: app tier to the database (ASG rules on NIC and subnet)"
	$(BIN) ip-flow-verify --resources $(DEMO_ENV) --service-tags $(DEMO_TAGS) --vm vm-app1 \
	  --direction Outbound --protocol TCP --local 10.2.1.4:50000 --remote 10.2.2.4:1433 --explain | head -40
	@echo; echo "== Effective security rules of nic-web1"
	$(BIN) effective-security-rules --resources $(DEMO_ENV) --service-tags $(DEMO_TAGS) --nic nic-web1 -o table
	@echo; echo "== Security group view of vm-db1 (first lines)"
	$(BIN) security-group-view --resources $(DEMO_ENV) --service-tags $(DEMO_TAGS) --vm vm-db1 | head -30

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: deps
	$(CARGO) test --workspace --locked

test: lint unit

bench: deps
	$(CARGO) bench -p netwatch --bench nsg
	$(CARGO) bench -p netwatch --bench lpm

clean:
	$(CARGO) clean
