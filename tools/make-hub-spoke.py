#!/usr/bin/env python3
"""Writes the bundled hub-and-spoke example environment.

One environment, two shapes, as Azure users really have them:
  demo/hub-spoke/         the REST/ARM shape (fields under "properties"), one
                          file per resource group and type, as
                          `az rest --method get --url .../networkSecurityGroups` returns
                          ({"value": [...]}) or a single resource
  tests/data/hub-spoke-cli/  the same resources as `az ... list -o json` prints them:
                          properties flattened, "resourceGroup" added, arrays

Run from the repository root: python3 tools/make-hub-spoke.py
"""
import copy
import hashlib
import json
import os

SUB = "6f8c3a2e-1b4d-4e7f-9a0b-2c5d8e1f3a40"
LOC = "westeurope"


def rid(rg, provider, kind, name, *rest):
    s = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/{provider}/{kind}/{name}"
    for i in range(0, len(rest), 2):
        s += f"/{rest[i]}/{rest[i + 1]}"
    return s


def net(rg, kind, name, *rest):
    return rid(rg, "Microsoft.Network", kind, name, *rest)


def etag(n):
    return f'W/"{n:08x}-0000-4000-8000-00000000{n:04x}"'


def res(rg, kind, name, typ, props, n):
    return {
        "name": name,
        "id": net(rg, kind, name) if not typ.startswith("Microsoft.Compute") else rid(rg, "Microsoft.Compute", kind, name),
        "etag": etag(n),
        "type": typ,
        "location": LOC,
        "properties": props,
    }


def rule(nsg_rg, nsg, name, prio, direction, access, protocol, src="*", dst="*", sport="*", dport="*", n=0, **extra):
    p = {
        "provisioningState": "Succeeded",
        "protocol": protocol,
        "access": access,
        "priority": prio,
        "direction": direction,
        "sourcePortRanges": [],
        "destinationPortRanges": [],
        "sourceAddressPrefixes": [],
        "destinationAddressPrefixes": [],
    }
    for key, val in (("sourceAddressPrefix", src), ("destinationAddressPrefix", dst), ("sourcePortRange", sport), ("destinationPortRange", dport)):
        if isinstance(val, list):
            p[key + "es" if key.endswith("Prefix") else key + "s"] = val
        elif val is not None:
            p[key] = val
    p.update(extra)
    return {
        "name": name,
        "id": net(nsg_rg, "networkSecurityGroups", nsg, "securityRules", name),
        "etag": etag(1000 + prio + n),
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "properties": p,
    }


def asg_ref(rg, name):
    return {"id": net(rg, "applicationSecurityGroups", name)}


HUB, SPOKES = "rg-hub", "rg-spokes"

# ------------------------------------------------------------------ NSGs
nsgs = {}


def nsg(rg, name, rules, subnets=(), nics=()):
    props = {
        "provisioningState": "Succeeded",
        "resourceGuid": f"{int(hashlib.md5(name.encode()).hexdigest()[:8], 16):08x}-5d2c-4b7e-9f10-3a6c1e8d4b2f",
        "flushConnection": False,
        "securityRules": rules,
        "subnets": [{"id": s} for s in subnets],
        "networkInterfaces": [{"id": x} for x in nics],
    }
    nsgs[name] = (rg, res(rg, "networkSecurityGroups", name, "Microsoft.Network/networkSecurityGroups", props, len(nsgs) + 1))


W = "nsg-web-subnet"
nsg(SPOKES, W, [
    rule(SPOKES, W, "Allow-HTTPS-In", 100, "Inbound", "Allow", "Tcp", src="Internet", dport="443", description="HTTPS from the Internet"),
    rule(SPOKES, W, "Allow-Web-Alt-In", 110, "Inbound", "Allow", "Tcp", src="*", dst=["10.1.1.0/24", "fd00:1:0:1::/64"], dport=["80", "8080-8090"]),
    rule(SPOKES, W, "Deny-SSH-From-Internet", 120, "Inbound", "Deny", "Tcp", src="Internet", dport="22"),
    rule(SPOKES, W, "Allow-SSH-From-Jump", 130, "Inbound", "Allow", "Tcp", src="10.0.2.4", dport="22"),
    rule(SPOKES, W, "Allow-Icmp-In", 300, "Inbound", "Allow", "Icmp", src="VirtualNetwork"),
    rule(SPOKES, W, "Deny-Telnet-IPv6", 400, "Inbound", "Deny", "Tcp", src="::/0", dport="23"),
    rule(SPOKES, W, "Allow-Storage-WestEurope-Out", 140, "Outbound", "Allow", "Tcp", dst="Storage.WestEurope", dport="443"),
    rule(SPOKES, W, "Deny-Sql-Out", 150, "Outbound", "Deny", "Tcp", dst="Sql", dport="1433"),
    rule(SPOKES, W, "Deny-DNS-Internet-Out", 200, "Outbound", "Deny", "Udp", dst="Internet", dport="53"),
], subnets=[net(SPOKES, "virtualNetworks", "vnet-web", "subnets", "snet-web")])

N = "nsg-web-nic"
nsg(SPOKES, N, [
    rule(SPOKES, N, "Deny-8081-In", 100, "Inbound", "Deny", "Tcp", dport="8081"),
    rule(SPOKES, N, "Allow-Web-In", 110, "Inbound", "Allow", "Tcp", dport=["80", "443", "8080-8090"]),
    rule(SPOKES, N, "Allow-SSH-VNet-In", 120, "Inbound", "Allow", "Tcp", src="VirtualNetwork", dport="22"),
    rule(SPOKES, N, "Deny-SMTP-Out", 100, "Outbound", "Deny", "Tcp", dport="25"),
    rule(SPOKES, N, "Allow-Telnet-Lab-In", 130, "Inbound", "Allow", "Tcp", src=["198.51.100.0/24", "2001:db8:feed::/48"], dport="23"),
], nics=[net(SPOKES, "networkInterfaces", "nic-web1")])

A = "nsg-app-nic"
nsg(SPOKES, A, [
    {**rule(SPOKES, A, "Allow-Web-To-App", 100, "Inbound", "Allow", "Tcp", src=None, dst=None, dport="8443")} | {},
    rule(SPOKES, A, "Deny-Other-8443", 110, "Inbound", "Deny", "Tcp", dport="8443"),
    rule(SPOKES, A, "Allow-App-To-Db", 100, "Outbound", "Allow", "Tcp", src=None, dst=None, dport="1433"),
    rule(SPOKES, A, "Deny-Db-Subnet-Out", 110, "Outbound", "Deny", "*", dst="10.2.2.0/24"),
], nics=[net(SPOKES, "networkInterfaces", "nic-app1")])
# ASG-based rules: source/destination given by application security groups.
# A group's NICs are all in one VNet and a rule's groups name NICs of the
# VNet it guards (spec 1.7): the web tier (vnet-web) is its subnet's prefix here.
r = nsgs[A][1]["properties"]["securityRules"]
r[0]["properties"]["sourceAddressPrefix"] = "10.1.1.0/24"
r[0]["properties"]["destinationApplicationSecurityGroups"] = [asg_ref(SPOKES, "asg-app")]
r[2]["properties"]["destinationApplicationSecurityGroups"] = [asg_ref(SPOKES, "asg-db")]
r[2]["properties"]["sourceAddressPrefix"] = "*"

D = "nsg-db"
nsg(SPOKES, D, [
    rule(SPOKES, D, "Allow-Sql-From-App", 100, "Inbound", "Allow", "Tcp", src=None, dst=None, dport="1433"),
    rule(SPOKES, D, "Allow-AzureLB-Probe", 4000, "Inbound", "Allow", "*", src="AzureLoadBalancer"),
    rule(SPOKES, D, "Deny-VNet-In", 4096, "Inbound", "Deny", "*", src="VirtualNetwork", dst="VirtualNetwork"),
], subnets=[net(SPOKES, "virtualNetworks", "vnet-app", "subnets", "snet-db")])
r = nsgs[D][1]["properties"]["securityRules"]
r[0]["properties"]["sourceApplicationSecurityGroups"] = [asg_ref(SPOKES, "asg-app")]
r[0]["properties"]["destinationApplicationSecurityGroups"] = [asg_ref(SPOKES, "asg-db")]

M = "nsg-mgmt"
nsg(HUB, M, [
    rule(HUB, M, "Allow-RDP-From-OnPrem", 100, "Inbound", "Allow", "Tcp", src="192.168.0.0/16", dport="3389"),
    rule(HUB, M, "Deny-RDP", 110, "Inbound", "Deny", "Tcp", dport="3389"),
    rule(HUB, M, "Deny-Syslog-Tcp", 120, "Inbound", "Deny", "Tcp", dport="514"),
    rule(HUB, M, "Deny-Esp-In", 130, "Inbound", "Deny", "Esp"),
    rule(HUB, M, "Allow-Monitor-Out", 100, "Outbound", "Allow", "Tcp", dst="AzureMonitor", dport="443"),
    rule(HUB, M, "Deny-Web-Out", 110, "Outbound", "Deny", "Tcp", dst="Internet", dport=["80", "443"]),
], subnets=[net(HUB, "virtualNetworks", "vnet-hub", "subnets", "snet-mgmt")])

# ------------------------------------------------------------------ VNets


def subnet(rg, vnet, name, prefixes, nsg_name=None, nsg_rg=None, rt=None, rt_rg=None, endpoints=()):
    p = {"provisioningState": "Succeeded", "privateEndpointNetworkPolicies": "Disabled", "privateLinkServiceNetworkPolicies": "Enabled"}
    if len(prefixes) == 1:
        p["addressPrefix"] = prefixes[0]
    else:
        p["addressPrefixes"] = prefixes
    if nsg_name:
        p["networkSecurityGroup"] = {"id": net(nsg_rg, "networkSecurityGroups", nsg_name)}
    if rt:
        p["routeTable"] = {"id": net(rt_rg, "routeTables", rt)}
    if endpoints:
        p["serviceEndpoints"] = [{"provisioningState": "Succeeded", "service": e, "locations": [LOC]} for e in endpoints]
    return {"name": name, "id": net(rg, "virtualNetworks", vnet, "subnets", name), "etag": etag(7), "type": "Microsoft.Network/virtualNetworks/subnets", "properties": p}


def peering(rg, vnet, name, remote_rg, remote, state, space, gw_transit=False, use_remote=False):
    return {
        "name": name,
        "id": net(rg, "virtualNetworks", vnet, "virtualNetworkPeerings", name),
        "etag": etag(9),
        "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
        "properties": {
            "provisioningState": "Succeeded",
            "peeringState": state,
            "peeringSyncLevel": "FullyInSync",
            "remoteVirtualNetwork": {"id": net(remote_rg, "virtualNetworks", remote)},
            "allowVirtualNetworkAccess": True,
            "allowForwardedTraffic": True,
            "allowGatewayTransit": gw_transit,
            "useRemoteGateways": use_remote,
            "remoteAddressSpace": {"addressPrefixes": space},
        },
    }


def vnet(rg, name, space, subnets, peerings, n):
    return res(rg, "virtualNetworks", name, "Microsoft.Network/virtualNetworks", {
        "provisioningState": "Succeeded",
        "resourceGuid": f"0000{n:04x}-aaaa-4bbb-8ccc-dddddddddddd",
        "addressSpace": {"addressPrefixes": space},
        "subnets": subnets,
        "virtualNetworkPeerings": peerings,
        "enableDdosProtection": False,
    }, 100 + n)


vnets = [
    (HUB, vnet(HUB, "vnet-hub", ["10.0.0.0/16"], [
        subnet(HUB, "vnet-hub", "GatewaySubnet", ["10.0.255.0/27"]),
        subnet(HUB, "vnet-hub", "snet-fw", ["10.0.1.0/24"]),
        subnet(HUB, "vnet-hub", "snet-mgmt", ["10.0.2.0/24"], M, HUB),
    ], [
        peering(HUB, "vnet-hub", "hub-to-web", SPOKES, "vnet-web", "Connected", ["10.1.0.0/16", "fd00:1::/48"], gw_transit=True),
        peering(HUB, "vnet-hub", "hub-to-app", SPOKES, "vnet-app", "Connected", ["10.2.0.0/16"], gw_transit=True),
        peering(HUB, "vnet-hub", "hub-to-legacy", SPOKES, "vnet-legacy", "Initiated", ["10.3.0.0/16"]),
    ], 1)),
    (SPOKES, vnet(SPOKES, "vnet-web", ["10.1.0.0/16", "fd00:1::/48"], [
        subnet(SPOKES, "vnet-web", "snet-web", ["10.1.1.0/24", "fd00:1:0:1::/64"], W, SPOKES, "rt-web", SPOKES, ["Microsoft.Storage"]),
    ], [peering(SPOKES, "vnet-web", "web-to-hub", HUB, "vnet-hub", "Connected", ["10.0.0.0/16"], use_remote=True)], 2)),
    (SPOKES, vnet(SPOKES, "vnet-app", ["10.2.0.0/16"], [
        subnet(SPOKES, "vnet-app", "snet-app", ["10.2.1.0/24"], rt="rt-app", rt_rg=SPOKES),
        subnet(SPOKES, "vnet-app", "snet-db", ["10.2.2.0/24"], D, SPOKES),
    ], [peering(SPOKES, "vnet-app", "app-to-hub", HUB, "vnet-hub", "Connected", ["10.0.0.0/16"], use_remote=True)], 3)),
    (SPOKES, vnet(SPOKES, "vnet-legacy", ["10.3.0.0/16"], [
        subnet(SPOKES, "vnet-legacy", "snet-legacy", ["10.3.1.0/24"]),
    ], [peering(SPOKES, "vnet-legacy", "legacy-to-hub", HUB, "vnet-hub", "Initiated", ["10.0.0.0/16"])], 4)),
]

# ------------------------------------------------------------------ route tables


def route(rg, table, name, prefix, hop, ip=None):
    p = {"provisioningState": "Succeeded", "addressPrefix": prefix, "nextHopType": hop, "hasBgpOverride": False}
    if ip:
        p["nextHopIpAddress"] = ip
    return {"name": name, "id": net(rg, "routeTables", table, "routes", name), "etag": etag(11), "type": "Microsoft.Network/routeTables/routes", "properties": p}


route_tables = [
    (SPOKES, res(SPOKES, "routeTables", "rt-web", "Microsoft.Network/routeTables", {
        "provisioningState": "Succeeded",
        "disableBgpRoutePropagation": False,
        "routes": [
            route(SPOKES, "rt-web", "to-app-via-fw", "10.2.0.0/16", "VirtualAppliance", "10.0.1.4"),
            route(SPOKES, "rt-web", "onprem-dc-via-fw", "172.16.10.0/24", "VirtualAppliance", "10.0.1.4"),
            route(SPOKES, "rt-web", "cgnat-via-fw", "100.64.0.0/10", "VirtualAppliance", "10.0.1.4"),
            route(SPOKES, "rt-web", "blackhole-test-net", "203.0.113.0/24", "None"),
            route(SPOKES, "rt-web", "blackhole-v6-lab", "2001:db8:99::/48", "None"),
            route(SPOKES, "rt-web", "hub-mgmt-direct", "10.0.2.0/24", "VnetLocal"),
            route(SPOKES, "rt-web", "partner-via-gateway", "10.60.0.0/16", "VirtualNetworkGateway"),
            route(SPOKES, "rt-web", "bing-direct", "13.107.21.200/32", "Internet"),
        ],
        "subnets": [{"id": net(SPOKES, "virtualNetworks", "vnet-web", "subnets", "snet-web")}],
    }, 201)),
    (SPOKES, res(SPOKES, "routeTables", "rt-app", "Microsoft.Network/routeTables", {
        "provisioningState": "Succeeded",
        "disableBgpRoutePropagation": True,
        "routes": [route(SPOKES, "rt-app", "default-via-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.1.4")],
        "subnets": [{"id": net(SPOKES, "virtualNetworks", "vnet-app", "subnets", "snet-app")}],
    }, 202)),
]

# ------------------------------------------------------------------ ASGs, NICs, VMs
asgs = [(SPOKES, res(SPOKES, "applicationSecurityGroups", a, "Microsoft.Network/applicationSecurityGroups",
                     {"provisioningState": "Succeeded", "resourceGuid": f"a5a5a5a5-0000-4000-8000-00000000000{i}"}, 300 + i))
        for i, a in enumerate(["asg-web", "asg-app", "asg-db"])]


def nic(rg, name, vm, mac, configs, nsg_name=None, n=0):
    ipcs = []
    for i, (ip, vnet_name, sn, asg_names) in enumerate(configs):
        p = {
            "provisioningState": "Succeeded",
            "privateIPAddress": ip,
            "privateIPAllocationMethod": "Static",
            "privateIPAddressVersion": "IPv6" if ":" in ip else "IPv4",
            "subnet": {"id": net(SPOKES if vnet_name != "vnet-hub" else HUB, "virtualNetworks", vnet_name, "subnets", sn)},
            "primary": i == 0,
        }
        if asg_names:
            p["applicationSecurityGroups"] = [asg_ref(SPOKES, a) for a in asg_names]
        cname = "ipconfig1" if i == 0 else f"ipconfig-v6" if ":" in ip else f"ipconfig{i + 1}"
        ipcs.append({"name": cname, "id": net(rg, "networkInterfaces", name, "ipConfigurations", cname), "etag": etag(12),
                     "type": "Microsoft.Network/networkInterfaces/ipConfigurations", "properties": p})
    props = {
        "provisioningState": "Succeeded",
        "ipConfigurations": ipcs,
        "macAddress": mac,
        "enableAcceleratedNetworking": True,
        "enableIPForwarding": name == "nic-fw",
        "primary": True,
        "virtualMachine": {"id": rid(rg, "Microsoft.Compute", "virtualMachines", vm)},
        "nicType": "Standard",
    }
    if nsg_name:
        props["networkSecurityGroup"] = {"id": net(SPOKES, "networkSecurityGroups", nsg_name)}
    return (rg, res(rg, "networkInterfaces", name, "Microsoft.Network/networkInterfaces", props, 400 + n))


nics = [
    nic(SPOKES, "nic-web1", "vm-web1", "00-0D-3A-2B-11-01", [("10.1.1.4", "vnet-web", "snet-web", ["asg-web"]), ("fd00:1:0:1::4", "vnet-web", "snet-web", [])], N, 1),
    nic(SPOKES, "nic-web2", "vm-web2", "00-0D-3A-2B-11-02", [("10.1.1.5", "vnet-web", "snet-web", ["asg-web"])], None, 2),
    nic(SPOKES, "nic-app1", "vm-app1", "00-0D-3A-2B-22-01", [("10.2.1.4", "vnet-app", "snet-app", ["asg-app"])], A, 3),
    nic(SPOKES, "nic-db1", "vm-db1", "00-0D-3A-2B-33-01", [("10.2.2.4", "vnet-app", "snet-db", ["asg-db"])], None, 4),
    nic(SPOKES, "nic-legacy", "vm-legacy", "00-0D-3A-2B-44-01", [("10.3.1.4", "vnet-legacy", "snet-legacy", [])], None, 5),
    nic(HUB, "nic-jump", "vm-jump", "00-0D-3A-2B-55-01", [("10.0.2.4", "vnet-hub", "snet-mgmt", [])], None, 6),
    nic(HUB, "nic-fw", "vm-fw", "00-0D-3A-2B-66-01", [("10.0.1.4", "vnet-hub", "snet-fw", [])], None, 7),
]


def vm(rg, name, nic_names, n):
    v = res(rg, "virtualMachines", name, "Microsoft.Compute/virtualMachines", {
        "vmId": f"{n:08x}-1111-4222-8333-444444444444",
        "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
        "provisioningState": "Succeeded",
        "networkProfile": {"networkInterfaces": [{"id": net(rg, "networkInterfaces", x), "properties": {"primary": i == 0}} for i, x in enumerate(nic_names)]},
    }, 500 + n)
    del v["etag"]
    return (rg, v)


vms = [vm(SPOKES, "vm-web1", ["nic-web1"], 1), vm(SPOKES, "vm-web2", ["nic-web2"], 2), vm(SPOKES, "vm-app1", ["nic-app1"], 3),
       vm(SPOKES, "vm-db1", ["nic-db1"], 4), vm(SPOKES, "vm-legacy", ["nic-legacy"], 5), vm(HUB, "vm-jump", ["nic-jump"], 6),
       vm(HUB, "vm-fw", ["nic-fw"], 7)]

# ------------------------------------------------------------------ gateways
vgw = (HUB, res(HUB, "virtualNetworkGateways", "vgw-hub", "Microsoft.Network/virtualNetworkGateways", {
    "provisioningState": "Succeeded",
    "gatewayType": "Vpn",
    "vpnType": "RouteBased",
    "enableBgp": True,
    "activeActive": False,
    "sku": {"name": "VpnGw1", "tier": "VpnGw1", "capacity": 2},
    "ipConfigurations": [{"name": "default", "id": net(HUB, "virtualNetworkGateways", "vgw-hub", "ipConfigurations", "default"),
                          "properties": {"privateIPAllocationMethod": "Dynamic",
                                         "subnet": {"id": net(HUB, "virtualNetworks", "vnet-hub", "subnets", "GatewaySubnet")},
                                         "publicIPAddress": {"id": net(HUB, "publicIPAddresses", "pip-vgw-hub")}}}],
    "bgpSettings": {"asn": 65515, "bgpPeeringAddress": "10.0.255.30", "peerWeight": 0},
}, 601))
lngs = [
    (HUB, res(HUB, "localNetworkGateways", "lng-onprem", "Microsoft.Network/localNetworkGateways", {
        "provisioningState": "Succeeded", "gatewayIpAddress": "203.0.113.10",
        "localNetworkAddressSpace": {"addressPrefixes": ["192.168.0.0/16", "172.16.10.0/24"]}}, 602)),
    (HUB, res(HUB, "localNetworkGateways", "lng-branch", "Microsoft.Network/localNetworkGateways", {
        "provisioningState": "Succeeded", "gatewayIpAddress": "198.51.100.20",
        "localNetworkAddressSpace": {"addressPrefixes": ["10.50.0.0/16"]}}, 603)),
]
conns = [
    (HUB, res(HUB, "connections", "cn-onprem", "Microsoft.Network/connections", {
        "provisioningState": "Succeeded", "connectionType": "IPsec", "connectionStatus": "Connected", "routingWeight": 0,
        "virtualNetworkGateway1": {"id": net(HUB, "virtualNetworkGateways", "vgw-hub")},
        "localNetworkGateway2": {"id": net(HUB, "localNetworkGateways", "lng-onprem")}}, 604)),
    (HUB, res(HUB, "connections", "cn-branch", "Microsoft.Network/connections", {
        "provisioningState": "Succeeded", "connectionType": "IPsec", "connectionStatus": "NotConnected", "routingWeight": 0,
        "virtualNetworkGateway1": {"id": net(HUB, "virtualNetworkGateways", "vgw-hub")},
        "localNetworkGateway2": {"id": net(HUB, "localNetworkGateways", "lng-branch")}}, 605)),
]
# A resource type netwatch does not use, as a real export would contain.
pips = [(HUB, res(HUB, "publicIPAddresses", "pip-vgw-hub", "Microsoft.Network/publicIPAddresses", {
    "provisioningState": "Succeeded", "ipAddress": "20.50.10.20", "publicIPAllocationMethod": "Static"}, 606))]

groups = {
    "networkSecurityGroups": list(nsgs.values()),
    "virtualNetworks": vnets,
    "routeTables": route_tables,
    "applicationSecurityGroups": asgs,
    "networkInterfaces": nics,
    "virtualMachines": vms,
    "virtualNetworkGateways": [vgw],
    "localNetworkGateways": lngs,
    "connections": conns,
    "publicIPAddresses": pips,
}

# ------------------------------------------------------------------ writing
FLATTEN_CHILDREN = ("securityRules", "defaultSecurityRules", "subnets", "virtualNetworkPeerings", "routes", "ipConfigurations")


def to_cli(r, rg=None):
    """az CLI's shape: properties flattened (recursively for sub-resources)."""
    out = {k: v for k, v in r.items() if k != "properties"}
    for k, v in r.get("properties", {}).items():
        if k in FLATTEN_CHILDREN and isinstance(v, list):
            v = [to_cli(c, rg) for c in v]
        out[k] = v
    if "networkProfile" in out:
        out["networkProfile"] = {"networkInterfaces": [{"id": x["id"], "primary": x.get("properties", {}).get("primary"), "resourceGroup": rg}
                                                       for x in out["networkProfile"]["networkInterfaces"]]}
    if rg:
        out["resourceGroup"] = rg
    return out


def write(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


for kind, items in groups.items():
    for rg in (HUB, SPOKES):
        mine = [r for (g, r) in items if g == rg]
        if not mine:
            continue
        # REST shape: the list response of the resource type.
        doc = mine[0] if len(mine) == 1 and kind in ("virtualNetworkGateways",) else {"value": mine}
        write(f"demo/hub-spoke/{rg}/{kind}.json", doc)
        write(f"tests/data/hub-spoke-cli/{rg}-{kind}.json", [to_cli(copy.deepcopy(r), rg) for r in mine])

# BGP routes the hub gateway learned, as `az network vnet-gateway
# list-learned-routes -g rg-hub -n vgw-hub` prints them.
learned = {"value": [
    {"asPath": "", "localAddress": "10.0.255.30", "network": "10.0.0.0/16", "nextHop": None, "origin": "Network", "sourcePeer": "10.0.255.30", "weight": 32768},
    {"asPath": "65010", "localAddress": "10.0.255.30", "network": "10.70.0.0/16", "nextHop": "192.168.255.1", "origin": "EBgp", "sourcePeer": "192.168.255.1", "weight": 32768},
    {"asPath": "65010", "localAddress": "10.0.255.30", "network": "10.71.0.0/16", "nextHop": "192.168.255.1", "origin": "EBgp", "sourcePeer": "192.168.255.1", "weight": 32768},
    {"asPath": "65010 65020", "localAddress": "10.0.255.30", "network": "10.1.1.0/24", "nextHop": "192.168.255.1", "origin": "EBgp", "sourcePeer": "192.168.255.1", "weight": 32768},
]}
write("demo/hub-spoke/rg-hub/vgw-hub-learned-routes.json", learned)
write("tests/data/hub-spoke-cli/rg-hub-vgw-hub-learned-routes.json", learned["value"])

# A small service tags file for the demo: real prefixes from the public
# download (changeNumber 375), cut to a few entries.
tags = {
    "changeNumber": 375,
    "cloud": "Public",
    "values": [
        {"name": "Storage.WestEurope", "id": "Storage.WestEurope", "properties": {"changeNumber": 70, "region": "westeurope", "regionId": 18,
         "platform": "Azure", "systemService": "AzureStorage", "addressPrefixes": ["13.69.40.16/28", "13.95.96.176/28", "13.95.240.16/28", "2603:1020:207::/48"],
         "networkFeatures": ["API", "NSG", "UDR", "FW", "VSE"]}},
        {"name": "Sql", "id": "Sql", "properties": {"changeNumber": 200, "region": "", "regionId": 0, "platform": "Azure", "systemService": "AzureSQL",
         "addressPrefixes": ["13.69.104.0/26", "13.69.104.192/26", "2603:1020:206::320/123"], "networkFeatures": ["API", "NSG", "UDR", "FW", "VSE"]}},
        {"name": "AzureMonitor", "id": "AzureMonitor", "properties": {"changeNumber": 150, "region": "", "regionId": 0, "platform": "Azure",
         "systemService": "AzureMonitor", "addressPrefixes": ["4.144.10.32/27", "4.144.10.64/26", "2603:1000:4::780/121"], "networkFeatures": ["API", "NSG", "UDR", "FW"]}},
    ],
}
write("demo/ServiceTags_Demo.json", tags)
print("wrote demo/hub-spoke, tests/data/hub-spoke-cli and demo/ServiceTags_Demo.json")
