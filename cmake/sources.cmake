# addernet_sources(<var> <group>): the files of one group of csrc/sources.txt, the source lists
# that setup.py reads too, so that the CMake and Python builds cannot disagree on them.
get_filename_component(_addernet_sources_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             "${_addernet_sources_root}/csrc/sources.txt")

function(addernet_sources var group)
  file(STRINGS "${_addernet_sources_root}/csrc/sources.txt" _line REGEX "^${group}:")
  if(NOT _line)
    message(FATAL_ERROR "csrc/sources.txt has no group '${group}'")
  endif()
  string(REGEX REPLACE "^${group}:[ \t]*" "" _globs "${_line}")
  separate_arguments(_globs)
  list(TRANSFORM _globs PREPEND "${_addernet_sources_root}/")
  file(GLOB _files CONFIGURE_DEPENDS ${_globs})
  set(${var} ${_files} PARENT_SCOPE)
endfunction()
