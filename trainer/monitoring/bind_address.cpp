#include "trainer/monitoring/bind_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <stdexcept>

namespace ddpm {
namespace {

bool parse_ipv4(const std::string& text, uint32_t& address) {
  in_addr parsed{};
  if (::inet_pton(AF_INET, text.c_str(), &parsed) != 1) return false;
  address = ntohl(parsed.s_addr);
  return true;
}

std::string format_ipv4(uint32_t address) {
  in_addr a{};
  a.s_addr = htonl(address);
  char text[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, text, sizeof(text));
  return text;
}

}  // namespace

BindAddress resolve_bind_address(const std::string& setting, const std::string& hostname) {
  const std::string key = "monitoring.bind_address " + setting + ": ";
  const size_t slash = setting.find('/');
  uint32_t address = 0;
  if (slash == std::string::npos) {
    if (!parse_ipv4(setting, address)) throw std::runtime_error(key + "expected an IPv4 address or a subnet (10.0.0.0/8)");
    const bool any = address == INADDR_ANY;
    return {setting, any ? hostname : setting, (address >> 24) == 127};
  }
  const std::string bits_text = setting.substr(slash + 1);
  int bits = -1;
  if (!bits_text.empty() && bits_text.size() <= 2 && bits_text.find_first_not_of("0123456789") == std::string::npos) {
    bits = std::stoi(bits_text);
  }
  if (!parse_ipv4(setting.substr(0, slash), address) || bits < 0 || bits > 32) {
    throw std::runtime_error(key + "expected a subnet as ADDRESS/BITS (10.0.0.0/8) or an IPv4 address");
  }
  const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) throw std::runtime_error(key + "cannot list this host's interfaces (getifaddrs)");
  const std::unique_ptr<ifaddrs, void (*)(ifaddrs*)> owned(list, ::freeifaddrs);
  std::string seen;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    const uint32_t mine = ntohl(reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
    if ((mine & mask) == (address & mask)) {
      const std::string found = format_ipv4(mine);
      return {found, found, (mine >> 24) == 127};
    }
    seen += (seen.empty() ? "" : ", ") + std::string(i->ifa_name) + " " + format_ipv4(mine);
  }
  throw std::runtime_error(key + "no interface of " + hostname + " has an IPv4 address in this subnet (its addresses: " +
                           (seen.empty() ? "none" : seen) + ")");
}

}  // namespace ddpm
