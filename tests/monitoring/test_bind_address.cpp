// monitoring.bind_address: an address as given, 0.0.0.0 listed by host name, a subnet resolved to this host's own
// address in it (loopback is the one subnet every machine has), and errors that name the key.
#include <gtest/gtest.h>

#include <stdexcept>

#include "trainer/monitoring/bind_address.h"

namespace {

std::string error_of(const std::string& setting) {
  try {
    ddpm::resolve_bind_address(setting, "node7");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(BindAddress, AnAddressIsUsedAsGiven) {
  const ddpm::BindAddress a = ddpm::resolve_bind_address("127.0.0.1", "node7");
  EXPECT_EQ(a.listen, "127.0.0.1");
  EXPECT_EQ(a.target, "127.0.0.1");
  EXPECT_TRUE(a.loopback);
  const ddpm::BindAddress b = ddpm::resolve_bind_address("10.1.2.3", "node7");
  EXPECT_EQ(b.listen, "10.1.2.3");
  EXPECT_FALSE(b.loopback);
}

TEST(BindAddress, EveryInterfaceIsListedByHostName) {
  const ddpm::BindAddress a = ddpm::resolve_bind_address("0.0.0.0", "node7");
  EXPECT_EQ(a.listen, "0.0.0.0");
  EXPECT_EQ(a.target, "node7");
  EXPECT_FALSE(a.loopback);
}

TEST(BindAddress, ASubnetBecomesThisHostsAddressInIt) {
  const ddpm::BindAddress a = ddpm::resolve_bind_address("127.0.0.0/8", "node7");
  EXPECT_EQ(a.listen, "127.0.0.1");
  EXPECT_EQ(a.target, "127.0.0.1");
  EXPECT_TRUE(a.loopback);
  // /32 of the loopback address itself; /0 matches the first IPv4 interface, whatever it is.
  EXPECT_EQ(ddpm::resolve_bind_address("127.0.0.1/32", "node7").listen, "127.0.0.1");
  EXPECT_FALSE(ddpm::resolve_bind_address("0.0.0.0/0", "node7").listen.empty());
}

TEST(BindAddress, ErrorsNameTheKeyAndTheHostsAddresses) {
  // No interface has the address 255.255.255.254 (even TEST-NET ranges turn up on CI machines).
  const std::string none = error_of("255.255.255.254/32");
  EXPECT_NE(none.find("monitoring.bind_address 255.255.255.254/32: no interface of node7 has an IPv4 address in this subnet"),
            std::string::npos) << none;
  EXPECT_NE(none.find("127.0.0.1"), std::string::npos) << none;  // lo is among the addresses listed
  for (const char* bad : {"localhost", "10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "10.0.0.0/8x", "300.1.1.1", ""}) {
    EXPECT_NE(error_of(bad).find("monitoring.bind_address " + std::string(bad) + ": expected"), std::string::npos)
        << bad << ": " << error_of(bad);
  }
}

}  // namespace
