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
DEMO_ARGS := --resources $(DEMO_ENV) --service-tags $(DEMO_TAGS)

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
	$(CARGO) build --release --locked --example demo_capture
	@rm -rf demo/out
	@echo; echo "== A capture on vm-web1's NIC, written by our traffic synthesizer"
	target/release/examples/demo_capture demo/out/web1.pcap
	@echo; echo "== Replay it through the NIC's NSGs (subnet nsg-web-subnet, NIC nsg-web-nic): every flow, its verdict and rule"
	$(BIN) evaluate $(DEMO_ARGS) --nic nic-web1 demo/out/web1.pcap -o table \
	  --flow-logs demo/out/nsg-flow-logs --vnet-flow-logs demo/out/vnet-flow-logs
	@echo; echo "== The NSG and VNet flow logs it wrote, in Azure's blob layout"
	@cd demo/out && find nsg-flow-logs vnet-flow-logs -name PT1H.json
	$(BIN) flow-logs read --summary demo/out/nsg-flow-logs demo/out/vnet-flow-logs
	@echo; echo "== IP flow verify: HTTPS from the Internet to vm-web1 (subnet NSG and NIC NSG both allow)"
	$(BIN) ip-flow-verify $(DEMO_ARGS) --vm vm-web1 --direction Inbound --protocol TCP --local 10.1.1.4:443 --remote 52.178.4.10:50123
	@echo; echo "== IP flow verify: SSH from the Internet (denied by the subnet NSG)"
	$(BIN) ip-flow-verify $(DEMO_ARGS) --vm vm-web1 --direction Inbound --protocol TCP --local 10.1.1.4:22 --remote 52.178.4.10:40000 -o table
	@echo; echo "== Next hop: vm-web1 to the app spoke (user route to the firewall) and to on-premises (peer's VPN gateway)"
	$(BIN) next-hop $(DEMO_ARGS) --vm vm-web1 --source 10.1.1.4 --destination 10.2.1.4
	$(BIN) next-hop $(DEMO_ARGS) --vm vm-web1 --source 10.1.1.4 --destination 192.168.3.3
	@echo; echo "== Connection troubleshoot: vm-web1 to vm-db1 on SQL, through the hub firewall, dropped at the database subnet"
	$(BIN) connectivity-check $(DEMO_ARGS) --source-vm vm-web1 --dest-vm vm-db1 --dest-port 1433 -o table
	@echo; echo "== Effective security rules of nic-db1"
	$(BIN) effective-security-rules $(DEMO_ARGS) --nic nic-db1 -o table
	@echo; echo "== Effective routes of nic-app1 (BGP propagation disabled, 0.0.0.0/0 to the firewall)"
	$(BIN) effective-routes $(DEMO_ARGS) --nic nic-app1 -o table

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
