#pragma once
#include <string>
namespace mnemo {
std::string version();
}
