#ifndef GATEHOUSE_CZLIB_SHIM_H
#define GATEHOUSE_CZLIB_SHIM_H
#include <zlib.h>
#endif
