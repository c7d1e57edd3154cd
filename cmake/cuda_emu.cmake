# The CUDA kernels (csrc/kernels/cuda) on the CPU: g++ compiles them against the CUDA toolkit's
# headers with the SIMT emulator of csrc/tests/emu force-included, and CTest runs them. Needs
# only the headers (no nvcc, no GPU); without them the tests are skipped, with one line saying
# why. Included by the top-level CMakeLists.txt.
#
#   simt_emu / simt_emu_ucontext   the emulator (fast x86-64 context switch / portable ucontext)
#   cuda_emu_selftest              the emulator's own checks on toy kernels
#   cuda_emu_test_cuda_kernels     csrc/tests/test_cuda_kernels.cu, unchanged
#   cuda_emu_kernels               odd and tile-boundary shapes x f32/f16/bf16 x every kernel,
#                                  three schedules, against float64 (test_emu_kernels.cpp), in two
#                                  shards: tapsum_weight (..._tapsum_weight) and all the others
#   cuda_emu_ucontext              a quick subset on the ucontext scheduler
#   cuda_emu_variant_<id>          the kernel variants of csrc/tests/emu/mutants.cmake: each
#                                  injected bug must be reported; index64 must pass
#
# ADDERNET_CUDA_EMU_SANITIZE=address,undefined (`make cuda-emu-asan`) builds the kernels with
# those sanitizers instead of the shared-memory checker's instrumentation.

# On by default, beside the nvcc build (ADDERNET_CUDA) too: `make test` configures one build of the
# kernels with nvcc where it is found, and that is where the emulated tests must run. The emulated
# targets compile their own copies of the .cu files with the host compiler, so the two do not meet.
option(ADDERNET_CUDA_EMU "Run the CUDA kernels on the CPU under the SIMT emulator" ON)
set(ADDERNET_CUDA_EMU_SANITIZE "" CACHE STRING
    "Sanitizers for the emulated kernels (e.g. address,undefined); empty: shared-memory checks")

get_filename_component(_emu_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(_emu_dir "${_emu_root}/csrc/tests/emu")
set(_emu_kernels "${_emu_root}/csrc/kernels/cuda")

find_path(ADDERNET_CUDA_EMU_INCLUDE cuda_runtime.h
          HINTS "$ENV{CUDA_HOME}/include" "$ENV{CUDA_PATH}/include" "${CUDAToolkit_ROOT}/include"
          PATHS /usr/local/cuda/include /opt/cuda/include)

set(_emu_skip "")
if(NOT ADDERNET_CUDA_EMU)
  set(_emu_skip "turned off (ADDERNET_CUDA_EMU=OFF)")
elseif(NOT ADDERNET_CUDA_EMU_INCLUDE OR NOT EXISTS "${ADDERNET_CUDA_EMU_INCLUDE}/cuda_bf16.h")
  set(_emu_skip "no CUDA toolkit headers (cuda_runtime.h, cuda_bf16.h) in CUDA_HOME, CUDA_PATH, "
                "/usr/local/cuda or /opt/cuda")
elseif(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux" OR NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(_emu_skip "needs Linux and GCC or Clang, have ${CMAKE_SYSTEM_NAME} ${CMAKE_CXX_COMPILER_ID}")
endif()
if(_emu_skip)
  string(CONCAT _emu_skip ${_emu_skip})
  message("cuda-emu tests skipped: ${_emu_skip}")
  add_test(NAME cuda_emu COMMAND sh -c "echo 'cuda-emu tests skipped: ${_emu_skip}'; exit 77")
  set_tests_properties(cuda_emu PROPERTIES SKIP_RETURN_CODE 77)
  return()
endif()

# -O2: the emulated run is dominated by fiber switches and checks, not by the kernels' code.
set(_emu_flags -std=c++17 -O2 -g -include "${_emu_dir}/simt_emu.h" -Wall -Wextra
    -Wno-unknown-pragmas -Wno-sign-compare)
if(ADDERNET_CUDA_EMU_SANITIZE)
  set(_emu_kernel_flags "-fsanitize=${ADDERNET_CUDA_EMU_SANITIZE}" -fno-omit-frame-pointer
      -fno-sanitize-recover=all)
  set(_emu_link "-fsanitize=${ADDERNET_CUDA_EMU_SANITIZE}")
  list(APPEND _emu_flags ${_emu_kernel_flags})
else()
  # Instrumentation only: the __tsan_* hooks are simt_shared.cpp's, no TSan runtime is linked.
  set(_emu_kernel_flags -fsanitize=thread)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    list(APPEND _emu_kernel_flags --param=tsan-instrument-func-entry-exit=0)
  endif()
  set(_emu_link "")
endif()

function(_emu_target name)
  target_compile_options(${name} PRIVATE ${_emu_flags})
  target_include_directories(${name} PRIVATE "${_emu_kernels}" "${_emu_dir}")
  target_include_directories(${name} SYSTEM PRIVATE "${ADDERNET_CUDA_EMU_INCLUDE}")
  target_link_options(${name} PRIVATE ${_emu_link})
endfunction()

set(_emu_runtime "${_emu_dir}/simt_shared.cpp" "${_emu_dir}/simt_runtime.cpp")
add_library(simt_emu STATIC "${_emu_dir}/simt_scheduler.cpp" ${_emu_runtime})
add_library(simt_emu_ucontext STATIC "${_emu_dir}/simt_scheduler.cpp" ${_emu_runtime})
target_compile_definitions(simt_emu_ucontext PRIVATE SIMT_UCONTEXT=1)
foreach(_lib simt_emu simt_emu_ucontext)
  _emu_target(${_lib})
  target_link_libraries(${_lib} PUBLIC ${CMAKE_DL_LIBS})
endforeach()

# The kernel sources compile as C++ through one-line wrappers, so that the same .cu files can
# be CUDA sources of the nvcc build (cmake/cuda_kernels.cmake) in this project too.
set(_emu_gen "${CMAKE_CURRENT_BINARY_DIR}/cuda_emu")
set(_emu_kernel_objs "")
foreach(_name adder_conv2d_cuda adder_conv2d_tapsum)
  set(_wrap "${_emu_gen}/${_name}.cpp")
  file(CONFIGURE OUTPUT "${_wrap}" CONTENT "#include \"${_emu_kernels}/${_name}.cu\"\n")
  add_library(emu_${_name} OBJECT "${_wrap}")
  _emu_target(emu_${_name})
  target_compile_options(emu_${_name} PRIVATE ${_emu_kernel_flags})
  set_source_files_properties("${_wrap}" PROPERTIES OBJECT_DEPENDS "${_emu_kernels}/${_name}.cu")
endforeach()

function(_emu_executable name)
  add_executable(${name} ${ARGN})
  _emu_target(${name})
endfunction()

_emu_executable(cuda_emu_selftest "${_emu_dir}/test_emu_selftest.cpp")
target_compile_options(cuda_emu_selftest PRIVATE ${_emu_kernel_flags})
target_link_libraries(cuda_emu_selftest PRIVATE simt_emu)
add_test(NAME cuda_emu_selftest COMMAND cuda_emu_selftest)

file(CONFIGURE OUTPUT "${_emu_gen}/test_cuda_kernels.cpp"
     CONTENT "#include \"${_emu_root}/csrc/tests/test_cuda_kernels.cu\"\n")
_emu_executable(cuda_emu_test_cuda_kernels "${_emu_gen}/test_cuda_kernels.cpp"
                $<TARGET_OBJECTS:emu_adder_conv2d_cuda>)
target_link_libraries(cuda_emu_test_cuda_kernels PRIVATE simt_emu)
add_test(NAME cuda_emu_test_cuda_kernels COMMAND cuda_emu_test_cuda_kernels)

add_library(emu_driver OBJECT "${_emu_dir}/test_emu_kernels.cpp")
add_library(emu_driver_f32 OBJECT "${_emu_dir}/test_emu_kernels.cpp")
target_compile_definitions(emu_driver_f32 PRIVATE EMU_FLOAT_ONLY=1)
target_compile_options(emu_driver_f32 PRIVATE -Wno-unused-function)
foreach(_lib emu_driver emu_driver_f32)
  _emu_target(${_lib})
  target_include_directories(${_lib} PRIVATE "${_emu_root}/csrc")
endforeach()

_emu_executable(test_emu_kernels $<TARGET_OBJECTS:emu_driver>
                $<TARGET_OBJECTS:emu_adder_conv2d_cuda> $<TARGET_OBJECTS:emu_adder_conv2d_tapsum>)
target_link_libraries(test_emu_kernels PRIVATE simt_emu)
# Two shards of about equal time (tapsum_weight is half of it), so that ctest -j runs them at once.
add_test(NAME cuda_emu_kernels COMMAND test_emu_kernels --skip tapsum_weight)
add_test(NAME cuda_emu_kernels_tapsum_weight COMMAND test_emu_kernels --only tapsum_weight --tapsum-max-blocks 1500)

_emu_executable(test_emu_kernels_ucontext $<TARGET_OBJECTS:emu_driver>
                $<TARGET_OBJECTS:emu_adder_conv2d_cuda> $<TARGET_OBJECTS:emu_adder_conv2d_tapsum>)
target_link_libraries(test_emu_kernels_ucontext PRIVATE simt_emu_ucontext)
add_test(NAME cuda_emu_ucontext COMMAND test_emu_kernels_ucontext --quick --types f
                                        --tapsum-max-blocks 300)

# Kernel variants: a generated, float-only copy of one kernel source with the other's objects.
if(NOT ADDERNET_CUDA_EMU_SANITIZE)
  include("${_emu_dir}/mutants.cmake")
  foreach(_v IN LISTS ADDERNET_EMU_VARIANTS)
    get_filename_component(_name "${${_v}_file}" NAME_WE)
    set(_src "${_emu_kernels}/${${_v}_file}")
    set(_out "${_emu_gen}/variant_${_v}.cpp")
    add_custom_command(
      OUTPUT "${_out}"
      COMMAND "${CMAKE_COMMAND}" -DVARIANT=${_v} "-DSRC=${_src}" "-DOUT=${_out}"
              -P "${_emu_dir}/make_variant.cmake"
      DEPENDS "${_src}" "${_emu_dir}/mutants.cmake" "${_emu_dir}/make_variant.cmake"
      COMMENT "CUDA kernel variant ${_v}: ${${_v}_what}")
    if(_name STREQUAL "adder_conv2d_cuda")
      set(_other emu_adder_conv2d_tapsum)
    else()
      set(_other emu_adder_conv2d_cuda)
    endif()
    _emu_executable(test_emu_variant_${_v} "${_out}" $<TARGET_OBJECTS:emu_driver_f32>
                    $<TARGET_OBJECTS:${_other}>)
    set_source_files_properties("${_out}" PROPERTIES COMPILE_OPTIONS "${_emu_kernel_flags}")
    target_link_libraries(test_emu_variant_${_v} PRIVATE simt_emu)
    add_test(NAME cuda_emu_variant_${_v}
             COMMAND test_emu_variant_${_v} ${${_v}_args})
  endforeach()
endif()
