# cmake -DVARIANT=id -DSRC=file.cu -DOUT=file.cpp -P make_variant.cmake
# Writes a copy of SRC with variant id of mutants.cmake applied (each pattern must occur
# exactly once), instantiated for float only, and a #line so that __FILE__ and every
# diagnostic name the real source.
cmake_policy(VERSION 3.18)
include("${CMAKE_CURRENT_LIST_DIR}/mutants.cmake")
file(READ "${SRC}" text)
foreach(suffix "" 2)
  if(NOT DEFINED ${VARIANT}_old${suffix})
    continue()
  endif()
  set(old "${${VARIANT}_old${suffix}}")
  string(FIND "${text}" "${old}" first)
  string(FIND "${text}" "${old}" last REVERSE)
  if(first EQUAL -1 OR NOT first EQUAL last)
    message(FATAL_ERROR "variant ${VARIANT}: its pattern occurs ${first}..${last} (not exactly "
                        "once) in ${SRC}; update csrc/tests/emu/mutants.cmake")
  endif()
  string(REPLACE "${old}" "${${VARIANT}_new${suffix}}" text "${text}")
endforeach()
# Float only: the variants' runs use float32, and this halves their compile time.
string(REGEX REPLACE "\nADDERNET_(TAPSUM_)?INSTANTIATE\\((__half|__nv_bfloat16)\\)" "\n" text
       "${text}")
file(WRITE "${OUT}.tmp" "#line 1 \"${SRC}\"\n${text}")
file(RENAME "${OUT}.tmp" "${OUT}")
