// Where a rank serves its metrics: monitoring.bind_address is an IPv4 address (127.0.0.1, 0.0.0.0 for every
// interface) or a subnet in CIDR form (10.0.0.0/8). A subnet means "this host's own address in it": one config for
// every node of a cluster, each rank listening where a Prometheus on another host can reach it, and that address
// listed in prometheus_targets.json (Open MPI's btl_tcp_if_include takes subnets for the same reason).
#pragma once
#include <string>

namespace ddpm {

struct BindAddress {
  std::string listen;  // what the server binds: an IPv4 address
  std::string target;  // what Prometheus is told to scrape: the address, or the host name for 0.0.0.0
  bool loopback = false;
};

// Throws std::runtime_error naming the key, and this host's addresses when none is in the subnet.
BindAddress resolve_bind_address(const std::string& setting, const std::string& hostname);

}  // namespace ddpm
